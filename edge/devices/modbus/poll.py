"""What Modbus TCP and RTU readers share: planned reads through a pymodbus client, decoded to samples."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime, timezone
from typing import Any

from prometheus_client import Counter
from pymodbus.exceptions import ModbusException

from edge.devices.modbus.map import decode, plan, slice_words
from edge.devices.reader import Sample
from yujing.errors import DeviceError
from yujing.log import Limiter

log = logging.getLogger("yujing.edge.modbus")
CLOCK_OFF = Counter("yujing_edge_device_clock_off_total", "Polls whose device clock was not trusted", ["device"])
_clock_limiter = Limiter(3600.0)
for _noisy in ("pymodbus", "pymodbus.logging"):
    logging.getLogger(_noisy).setLevel(logging.CRITICAL)  # it logs every timeout at ERROR; we count them


async def read_map(client: Any, device: Any, clock: Any, lock: asyncio.Lock | None = None) -> list[Sample]:
    """Read every planned request of ``device``'s map; raise DeviceError on the first failure."""
    samples: list[Sample] = []
    clock_reg = device.timestamp.register() if device.timestamp is not None else None
    device_ts: float | None = None
    for req in plan([*device.registers, *([clock_reg] if clock_reg else [])], device.max_gap):
        call = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[req.table]
        try:
            if lock is None:
                async with asyncio.timeout(device.timeout_s + 0.5):
                    resp = await call(req.address, count=req.count, device_id=device.slave)
            else:
                async with lock, asyncio.timeout(device.timeout_s + 0.5):  # one request at a time on RS-485
                    resp = await call(req.address, count=req.count, device_id=device.slave)
        except (ModbusException, TimeoutError, OSError) as exc:
            raise DeviceError(device.id, f"{req.table} {req.address}+{req.count}: {exc}") from None
        if resp.isError():
            raise DeviceError(device.id, f"{req.table} {req.address}+{req.count}: exception response {resp}")
        block = resp.bits if req.table in ("coil", "discrete") else resp.registers
        if len(block) < req.count:
            raise DeviceError(device.id, f"{req.table} {req.address}: short response ({len(block)}/{req.count})")
        for reg in req.items:
            value = decode(reg, slice_words(req, reg, block))
            if reg is clock_reg:
                device_ts = value
            else:
                samples.append(Sample(reg.quantity, value, reg.unit, reg.sensor, checks=reg))
    if device_ts is not None:
        ts = trusted_time(device_ts, clock.timestamp(), device.timestamp.max_skew_s, device.id)
        if ts is not None:
            samples = [dataclasses.replace(s, ts=ts) for s in samples]
    return samples


def trusted_time(unix_s: float, now: float, max_skew_s: float, device_id: str) -> datetime | None:
    """The device's clock, unless it is unset or far off the gateway's (a logger after a flat battery)."""
    if abs(unix_s - now) > max_skew_s:
        CLOCK_OFF.labels(device_id).inc()
        if _clock_limiter.allow(device_id):
            log.warning("device clock is off; using the gateway's time", extra={"kv": {
                "device": device_id, "device_time": unix_s, "skew_s": round(unix_s - now)}})
        return None
    return datetime.fromtimestamp(unix_s, timezone.utc)

