"""A device kind lives in one folder: a kind added as a folder, and nothing else, is taken by the config, the
gateway agent, the simulators and the example checks.

The throw-away kind ``tally`` (a made-up instrument that answers ``?`` on TCP with a number) is written to a
temporary folder that joins ``edge.devices``'s package path, as a shipped folder would be found, in a fresh
interpreter so the registry discovers it from the start.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from edge.devices import Kind, kinds
from edge.devices.modbus.config import ModbusTcpDevice
from simulators.devices import Place, relocate
from testing.devices import check_examples

TALLY = {
    "__init__.py": '"""A made-up instrument (``tally``) that answers ``?`` on TCP with one number."""\n',
    "config.py": '''
        from typing import Any, Literal

        from pydantic import Field

        from edge.devices.base import QUANTITY, Checks, DeviceBase


        class TallyValue(Checks):
            quantity: str = Field(pattern=QUANTITY)
            unit: str = ""


        class TallyDevice(DeviceBase):
            type: Literal["tally"]
            host: str = "127.0.0.1"
            port: int = Field(default=7000, ge=1, le=65535)
            value: TallyValue

            def values(self) -> list[Any]:
                return [self.value]


        DEVICES = (TallyDevice,)
    ''',
    "reader.py": '''
        import asyncio

        from edge.devices.reader import Sample
        from yujing.errors import DeviceError


        class TallyReader:
            def __init__(self, device, ctx):
                self.device = device

            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc):
                pass

            async def read(self):
                d = self.device
                try:
                    async with asyncio.timeout(d.timeout_s):
                        r, w = await asyncio.open_connection(d.host, d.port)
                        w.write(b"?\\n")
                        line = await r.readline()
                        w.close()
                    return [Sample(d.value.quantity, float(line), d.value.unit, checks=d.value)]
                except (OSError, TimeoutError, ValueError) as exc:
                    raise DeviceError(d.id, f"tally: {exc!r}") from None


        READERS = {"tally": TallyReader}
    ''',
    "sim.py": '''
        import asyncio

        from simulators.devices.faults import Fault


        class TallySim:
            def __init__(self, device, sources, clock):
                self.device, self.sources, self.clock, self.fault = device, sources, clock, Fault.NONE

            async def _answer(self, r, w):
                await r.readline()
                if self.fault is Fault.NONE:
                    src = self.sources.get(self.device.value.quantity)
                    w.write(f"{src.value(self.clock.now()) if src else 0.0}\\n".encode())
                    await w.drain()
                w.close()

            async def set_fault(self, device_id, fault):
                self.fault = fault

            async def __aenter__(self):
                self.server = await asyncio.start_server(self._answer, self.device.host, self.device.port)
                return self

            async def __aexit__(self, *exc):
                self.server.close()


        def simulate(devices, sources, clock, mqtt=None):
            return {d.id: TallySim(d, sources.get(d.id, {}), clock) for d in devices}


        def relocate(dev, place):
            return dev.model_copy(update={"host": "127.0.0.1", "port": place.port("tally", dev.host, dev.port)})
    ''',
    "tally.example.yaml": '''
        devices:
          - {id: tl-001, type: tally, site: S-TL-001, host: 192.168.1.9, port: 7000, interval_s: 60,
             value: {quantity: level_m, unit: m, min: 0, max: 10}}
    ''',
}

# What the fresh interpreter does with the throw-away folder: each line a place that must take the new kind.
PROBE = '''
import asyncio, sys
from pathlib import Path
import edge.devices
edge.devices.__path__.append(sys.argv[1])  # the folder joins the package, as a shipped folder would

from edge.config import GatewayConfig
from edge.devices import kinds, make_reader
from edge.devices.reader import ReaderContext
from rules.equipment import EquipmentPack
from simulators.devices import simulable
from testing.devices import check_examples, run_examples
from yujing.clock import Clock

kind = kinds()["tally"]
gw = GatewayConfig.model_validate({"id": "g", "devices": [{"id": "t", "type": "tally", "site": "S",
                                                            "value": {"quantity": "level_m"}}]})
assert type(gw.devices[0]).__name__ == "TallyDevice", "config"
assert type(make_reader(gw.devices[0], ReaderContext(Clock()))).__name__ == "TallyReader", "edge"
assert simulable("tally"), "simulators"
devices = check_examples(kind)  # the example checks every kind passes
got = asyncio.run(run_examples(devices, Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
values = {(r.sensor, r.quantity, r.value) for r in got.readings() if r.quality == "ok"}
assert ("tl-001", "level_m", 5.0) in values, values
print("tally taken by config, edge, simulators and the example checks")
'''


def write_kind(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())


def test_a_kind_added_as_one_folder_is_taken_by_config_agent_simulators_and_example_checks(
        tmp_path, mosquitto, prefix):
    write_kind(tmp_path / "kinds" / "tally", TALLY)
    before = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "kinds"), str(tmp_path / "run"),
                          str(mosquitto.port), prefix], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "tally taken by" in run.stdout
    after = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    assert after == before, "adding the kind touched files of the repository"
    assert "tally" not in kinds()  # nor this interpreter's registry


CLASH = {**TALLY, "config.py": TALLY["config.py"].replace('Literal["tally"]', 'Literal["modbus_tcp"]')}
NO_CONFIG = {k: v for k, v in TALLY.items() if k != "config.py"}


@pytest.mark.parametrize("files, complaint", [
    (CLASH, "device type 'modbus_tcp' is declared by edge.devices.modbus and edge.devices.odd"),
    (NO_CONFIG, "edge.devices.odd: every folder here is a device kind, and this one has no config.py"),
], ids=["a type declared twice", "a folder without config.py"])
def test_the_registry_refuses_a_folder_it_cannot_make_a_kind_of(tmp_path, files, complaint):
    write_kind(tmp_path / "kinds" / "odd", files)
    probe = ("import sys, edge.devices\nedge.devices.__path__.append(sys.argv[1])\n"
             "try:\n    edge.devices.kinds()\nexcept LookupError as e:\n    print(e)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "kinds")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert complaint in run.stdout, run.stdout + run.stderr


MODBUS_EXAMPLE = "devices:\n  - {id: d, type: modbus_tcp, site: S, registers: [{quantity: level_m, address: 0}]}\n"


@pytest.mark.parametrize("files, complaint", [
    ({}, "no *.example.yaml"),
    ({"other.example.yaml": MODBUS_EXAMPLE}, "belong in their own folders"),
], ids=["no example", "an example of another kind"])
async def test_the_example_check_fails_a_kind_without_its_own_example(tmp_path, files, complaint):
    write_kind(tmp_path / "lonely", files)
    lonely = Kind("lonely", ModbusTcpDevice, "edge.devices.lonely", tmp_path / "lonely")
    with pytest.raises(AssertionError, match=complaint.replace("*", r"\*")):
        check_examples(lonely)


def tells_apart(text: str, kind: str) -> bool:
    """``type == "<kind>"``, ``type in (..., "<kind>")`` or ``"<kind>": "some.module"`` in ``text``."""
    return re.search(rf'type\s*(?:[!=]=|in)\s*[(\[{{]?[^)\]}}\n]*"{kind}"|"{kind}":\s*"[\w.]+"', text) is not None


def test_no_file_outside_its_folder_tells_kinds_apart():
    """The old spread: a registry of reader modules, a map of simulator modules, ``if dev.type == ...``
    chains. A kind's name compared with a device's ``type`` or mapped to a module outside its own folder
    is a second place to edit when adding a kind."""
    offenders = []
    for path in [*ROOT.glob("edge/*.py"), *ROOT.glob("simulators/**/*.py"), *ROOT.glob("rules/*.py"),
                 *ROOT.glob("testing/*.py"), *ROOT.glob("yujing/**/*.py")]:
        text = path.read_text()
        for k in kinds():
            if tells_apart(text, k):
                offenders.append(f"{path.relative_to(ROOT)}: {k}")
    assert not offenders, offenders


def test_the_spread_check_sees_the_old_ways():
    old = ['if dev.type == "mqtt":', 'if d.type in ("modbus_rtu", "serial_ascii")', '"sl651": "simulators.devices.x"']
    for line in old:
        assert any(tells_apart(line, k) for k in kinds()), line


async def test_relocated_devices_answer_only_on_the_places_own_ports_ptys_topics_and_broker(tmp_path):
    """What a drill does to every device (simulators/drill.py): nothing may answer where a live device is."""
    devices = [d for k in sorted(kinds().values(), key=lambda k: k.type) for d in check_examples(k)
               if d.type == k.type]
    drill, test = Place(tmp_path, prefix="yj-drill"), Place(tmp_path, prefix="t", broker=("127.0.0.1", 1999))
    moved = {d.id: relocate(d, drill) for d in devices}
    for d in devices:
        m = moved[d.id]
        for field in ("host", "listen_host"):
            if hasattr(d, field):
                assert getattr(m, field) == "127.0.0.1", (d.id, field)
        for field in ("port", "listen_port"):
            old, new = getattr(d, field, None), getattr(m, field, None)
            if isinstance(old, str) and old:  # a serial line: a pty of the drill's own
                assert Path(new).parent == tmp_path, d.id
            elif isinstance(old, int) and old:  # a TCP port: a free loopback port of the drill's own
                assert new != old and new > 0, d.id
        if d.type == "mqtt":
            assert m.topic == f"yj-drill/{d.topic}" and m.broker is None  # the drill's broker, never the vendor's
            if d.broker is not None:
                assert relocate(d, test).broker.port == 1999
    # what shared a link before shares one after (an RS-485 bus, one Modbus TCP gateway's slaves)
    shared = [(a.id, b.id) for a in devices for b in devices if a.id < b.id and a.type == b.type == "modbus_rtu"
              and a.port == b.port]
    assert shared and all(moved[a].port == moved[b].port for a, b in shared)
