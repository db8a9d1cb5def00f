"""Device rigs: a minimal deployment around some gateways, and the checks every device kind's examples pass.

The example checks take the kinds from the registry (edge/devices/), so a kind added as a folder is checked
like the shipped ones without any list here to update:

    for k in kinds().values(): check_examples(k)      # each example validates, builds its reader
    await run_examples(devices, tmp, port, prefix)    # and delivers every value through the agent
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import yaml

from edge.config import GatewayConfig
from edge.devices import Kind, kinds, make_reader
from edge.devices.reader import ReaderContext
from edge.service import serve
from simulators.devices import Place, relocate, simulate_devices
from simulators.devices.faults import source_key
from simulators.devices.values import Constant, ValueSource
from testing.edge import Collected, collect
from testing.waits import wait_for
from yujing.clock import Clock
from yujing.compose import Config, load_config
from yujing.runtime import Runtime


def deployment(directory: Path, gateways: list[dict[str, Any]], *, mqtt_port: int, prefix: str = "yujing",
               mqtt: dict[str, Any] | None = None) -> Config:
    """Write a config directory with one area, a site per device and these gateways; load it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sites = sorted({d["site"] for g in gateways for d in g.get("devices", [])})
    doc = {
        "deployment": {"name": "rig", "data_dir": str(directory / "var")},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "topic_prefix": prefix, **(mqtt or {})},
        "areas": [{"id": "county", "name": "县", "tier": "county"}],
        "sites": [{"id": s, "name": s, "kind": "rain", "area": "county"} for s in sites],
        "gateways": gateways,
    }
    (directory / "deployment.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return load_config(directory)


# --- the examples of every kind ----------------------------------------------------------------------

def example_devices(path: Path) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["devices"]


def check_examples(kind: Kind) -> list[Any]:
    """A kind's examples: there is one, each validates as a gateway's devices, each device is of a kind
    its folder declares, the kind itself is shown, and every device builds its reader. Returns the devices.
    Call it inside an event loop (pymodbus clients want one)."""
    own = {k.type for k in kinds().values() if k.folder == kind.folder}
    assert kind.examples(), f"{kind.folder}: no *.example.yaml beside the {kind.type!r} reader"
    devices = []
    for path in kind.examples():
        gw = GatewayConfig.model_validate({"id": "example", "devices": example_devices(path)})
        assert gw.devices, f"{path}: no devices"
        strangers = {d.type for d in gw.devices} - own
        assert not strangers, f"{path}: devices of types {sorted(strangers)} belong in their own folders"
        for d in gw.devices:
            assert make_reader(d, ReaderContext(Clock())) is not None
        devices += gw.devices
    assert kind.type in {d.type for d in devices}, f"{kind.folder}: no example shows type {kind.type!r}"
    return devices


def in_range_sources(device: Any) -> dict[str, ValueSource]:
    """A constant in the middle of each value's range (0.75 when it has none): every reading is good."""
    srcs: dict[str, ValueSource] = {}
    for v in device.values():
        lo, hi = v.min, v.max
        srcs[source_key(v.quantity, getattr(v, "sensor", ""))] = Constant((lo + hi) / 2 if lo is not None
                                                                         and hi is not None else 0.75)
    return srcs


async def run_examples(devices: list[Any], tmp: Path, mqtt_port: int, prefix: str,
                       timeout_s: float = 20.0) -> Collected:
    """Move ``devices`` onto loopback, ptys and the test broker, simulate them, run a gateway agent over them,
    and wait until a good reading of every configured value has crossed the broker."""
    (tmp / "tty").mkdir(parents=True, exist_ok=True)
    place = Place(tmp / "tty", prefix=f"{prefix}/src", broker=("127.0.0.1", mqtt_port))
    moved = [relocate(d, place).model_dump(mode="json") for d in devices]
    cfg = deployment(tmp / "cfg", [{"id": "gwx", "devices": moved}], mqtt_port=mqtt_port, prefix=prefix)
    clock = Clock(speed=600)
    rt = Runtime(cfg, clock)
    got, ready = Collected(), asyncio.Event()
    served = cfg.gateways[0].devices
    wanted = {(d.id, v.quantity) for d in served for v in d.values()}
    sub = asyncio.create_task(collect(mqtt_port, prefix, got, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        async with simulate_devices(served, {d.id: in_range_sources(d) for d in served}, clock, cfg.mqtt):
            agent = asyncio.create_task(serve(rt))

            def arrived() -> set:
                return {(r.sensor.split(".")[0], r.quantity) for r in got.readings() if r.quality == "ok"}

            try:
                await wait_for(lambda: wanted <= arrived(), timeout_s, "a good reading of every example value")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; missing {sorted(wanted - arrived())}") from None
            finally:
                rt.stop.set()
                await asyncio.wait_for(agent, 10)
    finally:
        sub.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sub
    return got
