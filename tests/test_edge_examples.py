"""Every shipped reader example validates, and runs end to end against its simulator, so examples never rot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, wait_for
from servers import free_port
from testing.edge import Collected, collect

from edge.config import GatewayConfig
from edge.readers import ReaderContext, make_reader
from edge.service import serve
from simulators.devices import simulate_devices
from simulators.devices.faults import source_key
from testing.devices import deployment
from simulators.devices.values import Constant
from yujing.clock import Clock
from yujing.runtime import Runtime

EXAMPLES = sorted((ROOT / "edge" / "readers").glob("*.example.yaml"))


def load(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text())["devices"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_each_example_validates_and_builds_its_reader(path):
    gw = GatewayConfig.model_validate({"id": "example", "devices": load(path)})
    kind = path.name.removesuffix(".example.yaml")
    assert gw.devices and all(kind.startswith(d.type) or d.type == "mqtt" for d in gw.devices)
    for d in gw.devices:
        assert make_reader(d, ReaderContext(Clock())) is not None


def test_every_reader_module_has_an_example():
    modules = {"modbus_tcp", "modbus_rtu", "serial_ascii", "sl651", "mqtt_source"}
    assert {p.name.removesuffix(".example.yaml") for p in EXAMPLES} == modules


def localise(devices: list[dict], tmp: Path, mqtt_port: int, prefix: str) -> list[dict]:
    """Point each example device at loopback, a pty path or the test broker; keep everything else."""
    out = []
    for d in devices:
        d = dict(d)
        if d["type"] == "modbus_tcp":
            d.update(host="127.0.0.1", port=free_port())
        elif d["type"] in ("modbus_rtu", "serial_ascii") or (d["type"] == "sl651" and d["transport"] == "serial"):
            d["port"] = str(tmp / Path(d["port"]).name)  # devices sharing a bus keep sharing it
        elif d["type"] == "sl651":
            d.update(listen_host="127.0.0.1", listen_port=free_port())
        elif d["type"] == "mqtt":
            d.update(topic=f"{prefix}/src/{d['topic']}")
            if "broker" in d:
                d["broker"] = {"host": "127.0.0.1", "port": mqtt_port}
        out.append(d)
    return out


def in_range_sources(dev) -> dict:
    items = getattr(dev, "registers", None) or getattr(dev, "fields", None) or list(dev.elements.values())
    srcs = {}
    for it in items:
        lo, hi = it.min, it.max
        v = (lo + hi) / 2 if lo is not None and hi is not None else 0.75
        srcs[source_key(it.quantity, getattr(it, "sensor", ""))] = Constant(v)
    return srcs


async def test_every_example_device_delivers_each_configured_quantity_through_the_agent(mosquitto, prefix, tmp_path):
    devices = [d for p in EXAMPLES for d in localise(load(p), tmp_path / "tty", mosquitto.port, prefix)]
    (tmp_path / "tty").mkdir()
    cfg = deployment(tmp_path / "cfg", [{"id": "gwx", "devices": devices}], mqtt_port=mosquitto.port, prefix=prefix)
    clock = Clock(speed=600)
    rt = Runtime(cfg, clock)
    got, ready = Collected(), asyncio.Event()
    wanted = {(d.id, q) for d in cfg.gateways[0].devices for q in
              {i.quantity for i in (getattr(d, "registers", None) or getattr(d, "fields", None)
                                    or [e for k, e in d.elements.items() if k in ("20", "26", "39")])}}
    sources = {d.id: in_range_sources(d) for d in cfg.gateways[0].devices}
    sub = asyncio.create_task(collect(mosquitto.port, prefix, got, ready))
    await asyncio.wait_for(ready.wait(), 10)
    async with simulate_devices(cfg.gateways[0].devices, sources, clock, cfg.mqtt):
        agent = asyncio.create_task(serve(rt))

        def arrived() -> set:
            return {(r.sensor.split(".")[0], r.quantity) for r in got.readings() if r.quality == "ok"}

        try:
            await wait_for(lambda: wanted <= arrived(), 20, "a good reading of every example quantity")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; missing {sorted(wanted - arrived())}") from None
        finally:
            rt.stop.set()
            await asyncio.wait_for(agent, 10)
            sub.cancel()
    cam = [r for r in got.readings() if r.quantity == "smoke_confidence"][0]
    assert set(cam.meta) == {"camera", "bearing_deg", "snapshot"} and cam.meta["camera"] == "cam-fl-001"
