"""Every shipped device kind's examples validate, build their readers, and run end to end against the kind's
simulator through the gateway agent, so examples never rot. The kinds come from the registry (edge/devices/),
so a kind added as a folder is checked here with no list to update (tests/test_device_kinds.py shows it)."""

from __future__ import annotations

from typing import get_args

import pytest
from conftest import ROOT

from edge.config import DeviceConfig
from edge.devices import Kind, kinds
from simulators.devices import simulable
from testing.devices import check_examples, run_examples

KINDS = sorted(kinds().values(), key=lambda k: k.type)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.type)
async def test_each_kind_has_examples_that_validate_and_build_its_reader(kind: Kind):
    check_examples(kind)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.type)
def test_each_kind_lives_in_one_folder_with_its_reader_simulator_example_and_readme(kind: Kind):
    assert kind.folder.parent == ROOT / "edge" / "devices"
    assert kind.type in kind.load("reader").READERS
    assert simulable(kind.type)
    assert kind.examples() and (kind.folder / "README.md").exists()


def test_the_config_accepts_exactly_the_registered_kinds():
    accepted = {get_args(m.model_fields["type"].annotation)[0] for m in get_args(get_args(DeviceConfig)[0])}
    assert accepted == set(kinds()) == {"modbus_tcp", "modbus_rtu", "serial_ascii", "sl651", "mqtt"}


def test_the_edge_readme_names_every_kind():
    readme = (ROOT / "edge" / "README.md").read_text()
    assert all(f"`{k}`" in readme for k in kinds())


async def test_every_example_device_delivers_each_configured_value_through_the_agent(mosquitto, prefix, tmp_path):
    devices = [d for k in KINDS for d in check_examples(k) if d.type == k.type]
    got = await run_examples(devices, tmp_path, mosquitto.port, prefix)
    cam = [r for r in got.readings() if r.quantity == "smoke_confidence"][0]
    assert set(cam.meta) == {"camera", "bearing_deg", "snapshot"} and cam.meta["camera"] == "cam-fl-001"
