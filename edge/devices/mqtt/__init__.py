"""JSON over MQTT (``mqtt``): third-party sensors and fire cameras. See README.md."""
