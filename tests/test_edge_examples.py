"""Every shipped reader example validates, and runs end to end against its simulator, so examples never rot."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import get_args

import pytest
import yaml
from conftest import ROOT, wait_for
from servers import free_port
from testing.edge import Collected, collect

from edge.config import DeviceConfig, GatewayConfig
from edge.readers import _MODULES, ReaderContext, make_reader
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


def reader_modules(readers: Path) -> set[str]:
    """Every module in ``readers`` that registers a reader (``@register("<type>")``), by module name."""
    return {p.stem for p in readers.glob("*.py") if re.search(r"^@register\(", p.read_text(), re.M)}


def without_example(readers: Path) -> set[str]:
    return {m for m in reader_modules(readers) if not (readers / f"{m}.example.yaml").exists()}


def test_every_reader_module_has_an_example():
    readers = ROOT / "edge" / "readers"
    found = reader_modules(readers)
    # the registry's own list and the modules found on disk agree (a module the registry forgot is found too)
    assert {m.rsplit(".", 1)[1] for m in _MODULES.values()} <= found
    assert without_example(readers) == set()
    assert {p.name.removesuffix(".example.yaml") for p in EXAMPLES} == found  # and no example without a reader


def test_every_device_type_the_config_accepts_has_a_reader_and_an_example():
    types = {get_args(m.model_fields["type"].annotation)[0] for m in get_args(get_args(DeviceConfig)[0])}
    assert types == set(_MODULES)
    shown = {d["type"] for p in EXAMPLES for d in load(p)}
    assert types <= shown


def test_a_new_reader_module_without_an_example_is_found(tmp_path):
    (tmp_path / "lora.py").write_text('@register("lora")\nclass LoraReader:\n    pass\n')
    (tmp_path / "helpers.py").write_text("X = 1\n")
    (tmp_path / "modbus_tcp.py").write_text('@register("modbus_tcp")\ndef make(): ...\n')
    (tmp_path / "modbus_tcp.example.yaml").write_text("devices: []\n")
    assert without_example(tmp_path) == {"lora"}


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
