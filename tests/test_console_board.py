"""The console's board (console/board.py): how each site of the example is coloured, from the warnings in force
and the gateways' heartbeats. Pure state: warnings and heartbeats in, changed sites out."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from console.board import Board
from yujing.compose import load_config
from yujing.model import Hazard, HazardWarning, Level, WarningState

ZX = Path(__file__).resolve().parent.parent / "config" / "zhongxian"
T0 = datetime(2026, 7, 14, tzinfo=timezone.utc)
SITE, GATEWAY = "RG-ZHONGZHOU-01", "gw-zhongzhou"


@pytest.fixture(scope="module")
def cfg():
    return load_config(ZX)


def w(key: str, hazard: Hazard, level: Level, *, site: str = SITE, area: str = "", version: int = 1,
      state: WarningState = WarningState.ISSUED) -> HazardWarning:
    return HazardWarning(key=key, version=version, hazard=hazard, level=level, state=state, site=site, area=area,
                         issued_at=T0, updated_at=T0)


def test_a_site_takes_the_highest_level_in_force_and_goes_back_to_normal_when_lifted(cfg):
    b = Board(cfg)
    assert b.put_warning(w(f"rainstorm:{SITE}", Hazard.RAINSTORM, Level.BLUE)) == [SITE]
    assert b.put_warning(w(f"torrent:{SITE}", Hazard.TORRENT, Level.ORANGE)) == [SITE]
    assert b.states[SITE].level is Level.ORANGE and b.states[SITE].hazards == ("rainstorm", "torrent")
    assert b.put_warning(w(f"torrent:{SITE}", Hazard.TORRENT, Level.ORANGE, version=2,
                           state=WarningState.LIFTED)) == [SITE]
    assert b.states[SITE].level is Level.BLUE
    assert b.put_warning(w(f"rainstorm:{SITE}", Hazard.RAINSTORM, Level.BLUE)) == []  # said again
    assert b.clear_warning(f"rainstorm:{SITE}") == [SITE] and b.states[SITE].level is None


def test_an_older_version_arriving_late_changes_nothing(cfg):
    b = Board(cfg)
    b.put_warning(w(f"rainstorm:{SITE}", Hazard.RAINSTORM, Level.YELLOW, version=3, state=WarningState.UPGRADED))
    assert b.put_warning(w(f"rainstorm:{SITE}", Hazard.RAINSTORM, Level.BLUE, version=1)) == []
    assert b.states[SITE].level is Level.YELLOW


def test_a_warning_addressed_to_a_village_colours_every_site_under_it_and_nothing_else(cfg):
    b = Board(cfg)
    under = {s.id for s in cfg.sites if "zhongzhou.shidi" in [a.id for a in cfg.lineage(s.area)]}
    assert under and SITE in under
    changed = b.put_warning(w("torrent:@zhongzhou.shidi:op-1", Hazard.TORRENT, Level.RED, site="",
                              area="zhongzhou.shidi"))
    assert set(changed) == under
    assert {s for s, st in b.states.items() if st.level is Level.RED} == under


def test_equipment_warnings_grey_a_site_only_when_every_device_of_it_is_silent(cfg):
    b = Board(cfg)
    devices = b.sites[SITE].devices
    assert devices == ("rg-zhongzhou-01",)
    assert b.put_warning(w("equipment:rg-zhongzhou-01:fault", Hazard.EQUIPMENT, Level.YELLOW)) == []  # a fault
    assert not b.states[SITE].silent
    assert b.put_warning(w("equipment:rg-zhongzhou-01", Hazard.EQUIPMENT, Level.YELLOW)) == [SITE]
    assert b.states[SITE].silent and b.states[SITE].level is None  # equipment is not a hazard level
    assert [x.key for x in b.in_force()] == [] and len(b.equipment()) == 2


def test_a_gateway_that_says_offline_greys_all_its_sites_and_its_next_heartbeat_brings_them_back(cfg):
    b = Board(cfg)
    own = {s.id for s in b.sites.values() if s.gateway == GATEWAY}
    assert len(own) > 5
    assert set(b.put_heartbeat(GATEWAY, {"online": False, "devices": {}})) == own
    assert all(b.states[s].silent for s in own)
    assert set(b.put_heartbeat(GATEWAY, {"online": True, "devices": {}})) == own
    assert not any(b.states[s].silent for s in own)
    # one device offline in the heartbeat greys its site only
    assert b.put_heartbeat(GATEWAY, {"online": True, "devices": {"rg-zhongzhou-01": {"state": "offline"}}}) == [SITE]
    rows = {r["device"]: r for r in b.device_rows()}
    assert rows["rg-zhongzhou-01"]["state"] == "offline" and rows["rg-zhongzhou-02"]["state"] == "ok"
