"""Modbus TCP and RTU (``modbus_tcp``, ``modbus_rtu``): register maps over TCP or RS-485. See README.md."""
