"""Modbus RTU on RS-485: devices on one serial port share one client; requests are serialised per bus.

Example: edge/readers/modbus_rtu.example.yaml
"""

from __future__ import annotations

import asyncio

from pymodbus.client import AsyncModbusSerialClient

from edge.config import ModbusRtuDevice
from edge.readers import ReaderContext, Sample, register
from edge.readers.modbus_common import expected, read_map
from yujing.errors import DeviceError


class Bus:
    """One serial line, its client and its lock; shared by every device configured on the port."""

    def __init__(self, device: ModbusRtuDevice) -> None:
        self.client = AsyncModbusSerialClient(
            device.port, baudrate=device.baudrate, bytesize=device.bytesize, parity=device.parity,
            stopbits=device.stopbits, timeout=device.timeout_s, retries=0, reconnect_delay=0,
        )
        self.lock = asyncio.Lock()
        self.users = 0

    async def ensure_open(self, device_id: str) -> None:
        if not self.client.connected and not await self.client.connect():
            raise DeviceError(device_id, f"cannot open serial port {self.client.comm_params.host}")


@register("modbus_rtu")
class ModbusRtuReader:
    def __init__(self, device: ModbusRtuDevice, ctx: ReaderContext) -> None:
        self.device = device
        self.clock = ctx.clock
        key = ("modbus_rtu", device.port)
        if key not in ctx.shared:
            ctx.shared[key] = Bus(device)
        self.bus: Bus = ctx.shared[key]

    async def __aenter__(self) -> "ModbusRtuReader":
        self.bus.users += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.bus.users -= 1
        if self.bus.users == 0:
            self.bus.client.close()

    def expected(self) -> list[tuple[str, str, str]]:
        return expected(self.device)

    async def read(self) -> list[Sample]:
        async with self.bus.lock:
            await self.bus.ensure_open(self.device.id)
        return await read_map(self.bus.client, self.device, self.clock, self.bus.lock)
