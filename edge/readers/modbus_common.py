"""What Modbus TCP and RTU readers share: planned reads through a pymodbus client, decoded to samples."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pymodbus.exceptions import ModbusException

from edge.readers import Sample
from edge.readers.modbus_map import decode, plan, slice_words
from yujing.errors import DeviceError

log = logging.getLogger("yujing.edge.modbus")
for _noisy in ("pymodbus", "pymodbus.logging"):
    logging.getLogger(_noisy).setLevel(logging.CRITICAL)  # it logs every timeout at ERROR; we count them


async def read_map(client: Any, device: Any, lock: asyncio.Lock | None = None) -> list[Sample]:
    """Read every planned request of ``device``'s map; raise DeviceError on the first failure."""
    samples: list[Sample] = []
    for req in plan(device.registers, device.max_gap):
        call = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[req.table]
        try:
            if lock is None:
                resp = await asyncio.wait_for(call(req.address, count=req.count, device_id=device.slave),
                                              device.timeout_s + 0.5)
            else:
                async with lock:  # one request at a time on an RS-485 bus
                    resp = await asyncio.wait_for(call(req.address, count=req.count, device_id=device.slave),
                                                  device.timeout_s + 0.5)
        except (ModbusException, TimeoutError, OSError) as exc:
            raise DeviceError(device.id, f"{req.table} {req.address}+{req.count}: {exc}") from None
        if resp.isError():
            raise DeviceError(device.id, f"{req.table} {req.address}+{req.count}: exception response {resp}")
        block = resp.bits if req.table in ("coil", "discrete") else resp.registers
        if len(block) < req.count:
            raise DeviceError(device.id, f"{req.table} {req.address}: short response ({len(block)}/{req.count})")
        for reg in req.items:
            value = decode(reg, slice_words(req, reg, block))
            samples.append(Sample(reg.quantity, value, reg.unit, reg.sensor, checks=reg))
    return samples


def expected(device: Any) -> list[tuple[str, str, str]]:
    """(quantity, unit, sensor) of every value the map yields: what a failed poll reports as comm-error."""
    return [(r.quantity, r.unit, r.sensor) for r in device.registers]
