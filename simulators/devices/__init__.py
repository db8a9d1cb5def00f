"""Device simulators for every configured device kind, driven by value sources, with fault injection.

    async with simulate_device(device_cfg, {"rain_count_mm": TippingCounter(...)}, clock) as sim:
        ...                        # the device answers where its config says
        await sim.fault(Fault.HANG)  # stops answering; Fault.NONE heals it

    async with simulate_devices(gw.devices, {dev.id: sources, ...}, clock) as sims:
        await sims.fault(Fault.OFFLINE, "rg-01")

Modbus devices that share a TCP host:port or a serial port share one
simulated server answering each slave id, as a real RS-485 bus or a Modbus
gateway does.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Iterable

from simulators.devices.faults import Fault
from simulators.devices.values import ValueSource

__all__ = ["Fault", "SimulatedDevices", "ValueSource", "simulate_device", "simulate_devices"]


class SimulatedDevices:
    """What runs; ``fault(kind, device_id)`` injects a fault (``Fault.NONE`` heals)."""

    def __init__(self) -> None:
        self.by_device: dict[str, Any] = {}  # device id → its simulator (shared by a bus's devices)
        self._only: str | None = None

    async def fault(self, kind: Fault, device_id: str | None = None) -> None:
        device_id = device_id or self._only
        if device_id is None:
            raise ValueError("name the device to fault")
        await self.by_device[device_id].set_fault(device_id, Fault(kind))

    def sim(self, device_id: str | None = None) -> Any:
        return self.by_device[device_id or self._only]  # type: ignore[index]


@contextlib.asynccontextmanager
async def simulate_devices(devices: Iterable[Any], sources: dict[str, dict[str, ValueSource]],
                           clock: Any, mqtt: Any = None) -> AsyncIterator[SimulatedDevices]:
    """``mqtt``: the deployment's MqttConfig, where MQTT devices without their own ``broker`` publish."""
    from simulators.devices.modbus import ModbusBusSim
    out = SimulatedDevices()
    async with contextlib.AsyncExitStack() as stack:
        buses: dict[tuple, ModbusBusSim] = {}
        for dev in devices:
            srcs = sources.get(dev.id, {})
            if dev.type in ("modbus_tcp", "modbus_rtu"):
                key = (dev.type, dev.host, dev.port) if dev.type == "modbus_tcp" else (dev.type, dev.port)
                if key not in buses:
                    buses[key] = ModbusBusSim(dev)
                buses[key].add(dev, srcs, clock)
                out.by_device[dev.id] = buses[key]
            else:
                sim = _make_single(dev, srcs, clock, mqtt)
                out.by_device[dev.id] = sim
        for sim in {id(s): s for s in out.by_device.values()}.values():
            await stack.enter_async_context(sim)
        yield out


def _make_single(dev: Any, sources: dict[str, ValueSource], clock: Any, mqtt: Any) -> Any:
    if dev.type == "serial_ascii":
        from simulators.devices.ascii_gauge import AsciiGaugeSim
        return AsciiGaugeSim(dev, sources, clock)
    if dev.type == "sl651":
        from simulators.devices.sl651_rtu import Sl651RtuSim
        return Sl651RtuSim(dev, sources, clock)
    if dev.type == "mqtt":
        from simulators.devices.camera import FireCameraSim
        return FireCameraSim(dev, sources, clock, mqtt)
    raise LookupError(f"no simulator for device type {dev.type!r}")


@contextlib.asynccontextmanager
async def simulate_device(device: Any, sources: dict[str, ValueSource], clock: Any,
                          mqtt: Any = None) -> AsyncIterator[SimulatedDevices]:
    async with simulate_devices([device], {device.id: sources}, clock, mqtt) as sims:
        sims._only = device.id
        yield sims
