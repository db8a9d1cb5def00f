"""Device simulators for every configured device, driven by value sources, with fault injection.

    async with simulate_device(device_cfg, {"rain_count_mm": TippingCounter(...)}, clock) as sim:
        ...                        # the device answers where its config says
        await sim.fault(Fault.HANG)  # stops answering; Fault.NONE heals it

    async with simulate_devices(gw.devices, {dev.id: sources, ...}, clock) as sims:
        await sims.fault(Fault.OFFLINE, "rg-01")

Each kind's simulator lives beside its reader, in ``edge/devices/<kind>/sim.py``: ``simulate(devices,
sources, clock, mqtt)`` gives a simulator (an async context manager with ``set_fault``) per device id, the
same one for devices that share a link (a Modbus RS-485 bus or TCP gateway), and ``relocate(device,
place)`` moves a device onto a :class:`~simulators.devices.place.Place`. This package keeps what the
kinds share: faults, value sources, ptys, places.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any, AsyncIterator, Iterable

from edge.devices import kind
from simulators.devices.faults import Fault
from simulators.devices.place import Place
from simulators.devices.values import ValueSource

__all__ = ["Fault", "Place", "SimulatedDevices", "ValueSource", "relocate", "simulable", "simulate_device",
           "simulate_devices", "simulator_of"]


def simulator_of(kind_name: str) -> ModuleType:
    """The ``sim`` module of a device kind; LookupError if the kind has none (yet)."""
    k = kind(kind_name)
    try:
        return k.load("sim")
    except ModuleNotFoundError as exc:
        if exc.name != f"{k.package}.sim":
            raise  # the simulator exists and is broken: say so, do not hide it as "no simulator"
        raise LookupError(f"no simulator for device type {kind_name!r}") from None


def simulable(kind_name: str) -> bool:
    try:
        simulator_of(kind_name)
    except LookupError:
        return False
    return True


def relocate(device: Any, place: Place) -> Any:
    """``device`` as it answers on ``place`` (see simulators/devices/place.py)."""
    return simulator_of(device.type).relocate(device, place)


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
    out = SimulatedDevices()
    by_module: dict[str, tuple[ModuleType, list[Any]]] = {}  # a folder's kinds share links (Modbus TCP, RTU)
    for dev in devices:
        mod = simulator_of(dev.type)
        by_module.setdefault(mod.__name__, (mod, []))[1].append(dev)
    for mod, devs in by_module.values():
        out.by_device.update(mod.simulate(devs, sources, clock, mqtt))
    async with contextlib.AsyncExitStack() as stack:
        for sim in {id(s): s for s in out.by_device.values()}.values():
            await stack.enter_async_context(sim)
        yield out


@contextlib.asynccontextmanager
async def simulate_device(device: Any, sources: dict[str, ValueSource], clock: Any,
                          mqtt: Any = None) -> AsyncIterator[SimulatedDevices]:
    async with simulate_devices([device], {device.id: sources}, clock, mqtt) as sims:
        sims._only = device.id
        yield sims
