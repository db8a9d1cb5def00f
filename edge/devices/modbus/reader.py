"""Modbus readers. TCP: one connection per device (so one slow device never queues behind another).
RTU on RS-485: devices on one serial port share one client; requests are serialised per bus.

Examples: modbus_tcp.example.yaml, modbus_rtu.example.yaml beside this module.
"""

from __future__ import annotations

import asyncio

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from edge.devices.modbus.config import ModbusRtuDevice, ModbusTcpDevice
from edge.devices.modbus.poll import read_map
from edge.devices.reader import ReaderContext, Sample
from yujing.errors import DeviceError


class ModbusTcpReader:
    def __init__(self, device: ModbusTcpDevice, ctx: ReaderContext) -> None:
        self.device = device
        self.clock = ctx.clock
        self.client = AsyncModbusTcpClient(
            device.host, port=device.port, timeout=device.timeout_s, retries=0, reconnect_delay=0,
        )

    async def __aenter__(self) -> "ModbusTcpReader":
        return self  # connect lazily in read(): a device that is down at start must not block the others

    async def __aexit__(self, *exc: object) -> None:
        self.client.close()

    async def read(self) -> list[Sample]:
        if not self.client.connected:
            if not await self.client.connect():
                raise DeviceError(self.device.id, f"cannot connect to {self.device.host}:{self.device.port}")
        try:
            return await read_map(self.client, self.device, self.clock)
        except DeviceError:
            self.client.close()  # drop a connection that may carry a late answer into the next request
            raise


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

    async def read(self) -> list[Sample]:
        async with self.bus.lock:
            await self.bus.ensure_open(self.device.id)
        return await read_map(self.bus.client, self.device, self.clock, self.bus.lock)


READERS = {"modbus_tcp": ModbusTcpReader, "modbus_rtu": ModbusRtuReader}
