"""Modbus TCP: one connection per device (so one slow device never queues behind another).

Example: edge/readers/modbus_tcp.example.yaml
"""

from __future__ import annotations

from pymodbus.client import AsyncModbusTcpClient

from edge.config import ModbusTcpDevice
from edge.readers import ReaderContext, Sample, register
from edge.readers.modbus_common import expected, read_map
from yujing.errors import DeviceError


@register("modbus_tcp")
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

    def expected(self) -> list[tuple[str, str, str]]:
        return expected(self.device)

    async def read(self) -> list[Sample]:
        if not self.client.connected:
            if not await self.client.connect():
                raise DeviceError(self.device.id, f"cannot connect to {self.device.host}:{self.device.port}")
        try:
            return await read_map(self.client, self.device, self.clock)
        except DeviceError:
            self.client.close()  # drop a connection that may carry a late answer into the next request
            raise
