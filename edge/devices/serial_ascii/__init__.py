"""Line-oriented serial instruments (``serial_ascii``). See README.md."""
