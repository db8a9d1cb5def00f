"""Equipment warnings: silent devices and gateways, stuck and out-of-range values — never "all clear"."""

from __future__ import annotations

import pytest

from rules.engine import Engine
from testing.rules import at, deployment, device, reading, site
from yujing.model import Hazard, Level, Q, Quality, WarningState


def engine(min_silence_s: float = 0.0) -> Engine:
    return Engine(deployment(
        [site("SK-1", "reservoir", name="观音水库", reservoir={"flood_limit_m": 312.0}), site("RG-1", "rain")],
        rules={"equipment": {"min_silence_s": min_silence_s}},
        gateways=[{"id": "gw-1", "heartbeat_s": 60, "devices": [device("sk-1", "SK-1", 60),
                                                                device("rg-1", "RG-1", 300, "rain_count_mm")]}]))


def level_m(value: float, seconds: float, sensor: str = "sk-1", **kw):
    return reading("SK-1", sensor, Q.LEVEL_M, value, at(seconds=seconds), **kw)


@pytest.mark.parametrize("silent_s, expected", [(179, None), (180, None), (181, Level.YELLOW)])
def test_a_device_silent_beyond_three_intervals_is_an_equipment_warning(silent_s, expected):
    eng = engine()
    eng.tick(at(seconds=0))
    eng.feed(level_m(300.0, 0))
    eng.tick(at(seconds=silent_s))
    assert eng.active("equipment:sk-1") == expected


def test_the_silence_warning_reads_as_missing_data_and_lifts_when_data_returns():
    eng = engine()
    eng.tick(at(seconds=0))
    eng.feed(level_m(300.0, 0))
    [w] = eng.tick(at(seconds=200))
    assert (w.hazard, w.level, w.site, w.area) == (Hazard.EQUIPMENT, Level.YELLOW, "SK-1", "v1")
    assert "无数据" in w.title and any("不代表平安无事" in e for e in w.evidence)
    [lift] = eng.feed(level_m(300.0, 230))
    assert (lift.key, lift.state, lift.version) == ("equipment:sk-1", WarningState.LIFTED, 2)


def test_a_device_never_heard_from_is_silent_counted_from_start():
    eng = engine()
    eng.tick(at(seconds=0))
    ws = eng.tick(at(seconds=301 * 3))  # rg-1 reports every 300 s
    keys = {w.key for w in ws}
    assert "equipment:rg-1" in keys and "equipment:sk-1" in keys
    assert any("从未收到数据" in e for w in ws for e in w.evidence)


def test_min_silence_keeps_fast_devices_from_alarming_on_a_short_hiccup():
    eng = engine(min_silence_s=300)
    eng.tick(at(seconds=0))
    eng.feed(level_m(300.0, 0))
    assert eng.tick(at(seconds=299)) == []
    assert [w.key for w in eng.tick(at(seconds=301))] == ["equipment:sk-1"]


def test_a_gateway_offline_by_its_last_will_warns_at_once_and_inhibits_its_devices():
    eng = engine()
    eng.tick(at(seconds=0))
    eng.feed(level_m(300.0, 0))
    eng.heartbeat("gw-1", True, at(seconds=0))
    ws = eng.heartbeat("gw-1", False, at(seconds=30))
    assert [(w.key, w.level) for w in ws] == [("equipment:gateway:gw-1", Level.YELLOW)]
    assert any("离线" in e for e in ws[0].evidence)
    ws = eng.tick(at(seconds=1000))  # its devices are silent too: the gateway's warning covers them
    assert ws == []
    [up] = eng.heartbeat("gw-1", True, at(seconds=1010))
    assert up.state is WarningState.LIFTED


def test_a_gateway_with_no_heartbeat_for_three_periods_is_offline():
    eng = engine(min_silence_s=0)
    eng.heartbeat("gw-1", True, at(seconds=0))
    assert all(w.key != "equipment:gateway:gw-1" for w in eng.tick(at(seconds=180)))
    ws = eng.tick(at(seconds=181))
    assert "equipment:gateway:gw-1" in {w.key for w in ws}


@pytest.mark.parametrize("quality", [Quality.STUCK, Quality.OUT_OF_RANGE, Quality.COMM_ERROR])
def test_a_reading_the_edge_flagged_is_a_fault_warning_and_not_data(quality):
    eng = engine()
    ws = eng.feed(level_m(float("nan") if quality is Quality.COMM_ERROR else 999.0, 0, quality=quality))
    assert [(w.key, w.level) for w in ws] == [("equipment:sk-1:fault", Level.BLUE)]
    assert eng.active("reservoir:SK-1") is None  # 999 m was not taken as a flood
    [lift] = eng.feed(level_m(300.0, 60))
    assert lift.state is WarningState.LIFTED


@pytest.mark.parametrize("value, fault", [(-0.01, True), (0.0, False), (1.0, False), (1.01, True)])
def test_values_outside_their_physical_range_are_faults(value, fault):
    eng = Engine(deployment([site("LQ-1", "forest")]))
    eng.feed(reading("LQ-1", "cam-1", Q.SMOKE, value, at()))
    assert (eng.active("equipment:cam-1:fault") is not None) == fault


@pytest.mark.parametrize("hours, stuck", [(11.9, False), (12.0, True)])
def test_a_level_unchanged_for_twelve_hours_is_stuck(hours, stuck):
    eng = engine()
    n = int(hours * 6)
    for i in range(n + 1):
        eng.feed(level_m(300.0, i * 600 if i < n else hours * 3600))
    assert (eng.active("equipment:sk-1:fault") is not None) == stuck


def test_a_rain_counter_standing_still_in_dry_weather_is_not_stuck():
    eng = engine()
    for i in range(200):
        eng.feed(reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, 12.0, at(minutes=5 * i)))
    assert eng.active("equipment:rg-1:fault") is None


def test_a_silent_gauge_during_a_rainstorm_keeps_the_rainstorm_warning_and_adds_an_equipment_one():
    eng = engine()
    eng.tick(at(seconds=0))
    eng.feed(reading("RG-1", "rg-1", Q.RAIN_MM, 60.0, at(seconds=0)))
    assert eng.active("rainstorm:RG-1") == Level.ORANGE
    for s in range(10, 6 * 3600, 10):
        eng.tick(at(seconds=s))
    assert eng.active("rainstorm:RG-1") == Level.ORANGE  # silence is not all clear
    assert eng.active("equipment:rg-1") == Level.YELLOW


def test_after_a_restart_devices_get_a_full_silence_period_but_active_silences_stay(tmp_path):
    from rules.store import StateStore
    path = tmp_path / "s.sqlite"
    cfg = engine().config
    with StateStore(path) as store:
        eng = Engine(cfg, store)
        eng.tick(at(seconds=0))
        eng.feed(level_m(300.0, 0))
        eng.feed(reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, 1.0, at(seconds=0)))
        eng.commit(eng.tick(at(seconds=200)))  # sk-1 silent (60 s device); rg-1 not yet (300 s device)
        assert eng.active("equipment:sk-1") and not eng.active("equipment:rg-1")
    with StateStore(path) as store:  # back after an hour down: the backlog is still arriving
        eng = Engine(cfg, store)
        ws = eng.tick(at(seconds=3600))
        assert ws == [] and eng.active("equipment:sk-1") == Level.YELLOW
        assert [w.key for w in eng.tick(at(seconds=3600 + 901))] == ["equipment:rg-1"]


def test_readings_from_a_gateway_whose_clock_is_ten_minutes_behind_do_not_look_silent():
    eng = engine(min_silence_s=300)
    eng.tick(at(seconds=0))
    eng.heartbeat("gw-1", True, at(seconds=0))
    for s in range(0, 1800, 60):  # live: each arrives at s, stamped s - 600 by the gateway's clock
        ws = eng.feed(level_m(300.0 + s / 1e4, s - 600, gateway="gw-1"), now=at(seconds=s))
        ws += eng.tick(at(seconds=s + 30))
        assert {"equipment:sk-1", "equipment:gateway:gw-1"}.isdisjoint(w.key for w in ws), ws
    assert eng.active("equipment:sk-1") is None and eng.active("equipment:gateway:gw-1") is None
    ws = eng.tick(at(seconds=1800 + 301))  # and silence is still seen, counted from the last arrival
    assert [w.key for w in ws] == ["equipment:gateway:gw-1"]  # (its devices' silence is inhibited)


def loss_keys(ws) -> list[tuple[str, object, object]]:
    return [(w.key, w.state, w.level) for w in ws if w.key.startswith("equipment:loss:")]


def test_readings_a_gateway_had_to_drop_raise_a_yellow_warning_once_and_lift_after_a_quiet_hour():
    eng = engine()
    assert eng.loss("gw-1", 0, "outbox", at(seconds=0)) == []  # heartbeats saying nothing was lost
    [w] = eng.loss("gw-1", 40, "outbox", at(seconds=60))
    assert (w.key, w.state, w.level, w.site) == ("equipment:loss:gw-1", WarningState.ISSUED, Level.YELLOW, "SK-1")
    assert "40 条" in w.title and "gw-1" in w.title
    assert any("丢弃了 40 条" in e and "缓存已满" in e for e in w.evidence), w.evidence
    assert eng.loss("gw-1", 40, "outbox", at(seconds=120)) == []  # every heartbeat repeats the count
    assert eng.loss("gw-1", 55, "outbox", at(seconds=1800)) == []  # more lost: the warning stands, the hour restarts
    assert loss_keys(eng.tick(at(seconds=1800 + 3599))) == []
    [lift] = eng.tick(at(seconds=1800 + 3600))
    assert (lift.key, lift.state, lift.version) == ("equipment:loss:gw-1", WarningState.LIFTED, 2)
    assert "解除" in lift.title and any("未再丢弃数据" in e for e in lift.evidence)
    [again] = eng.loss("gw-1", 56, "outbox", at(seconds=9000))  # one more later: raised again, one counted
    assert (again.state, again.version, again.values["lost"]) == (WarningState.ISSUED, 3, 1.0)


def test_a_first_report_of_loss_raises_and_a_reset_count_is_new_loss():
    eng = engine()
    [w] = eng.loss("collector-c1", 7, "spool-full", at(seconds=0))
    assert (w.key, w.level, w.values["lost"]) == ("equipment:loss:collector-c1", Level.YELLOW, 7.0)
    assert any("缓存队列已满" in e for e in w.evidence)
    eng.tick(at(seconds=3600))
    assert eng.active("equipment:loss:collector-c1") is None
    assert eng.loss("collector-c1", 0, "", at(seconds=4000)) == []  # it restarted: its count starts again
    [w] = eng.loss("collector-c1", 3, "disk-full", at(seconds=4100))
    assert w.values["lost"] == 3.0 and any("磁盘已满" in e for e in w.evidence)


def test_a_loss_known_before_a_restart_is_not_raised_again(tmp_path):
    from rules.store import StateStore
    path = tmp_path / "s.sqlite"
    cfg = engine(min_silence_s=10**6).config
    with StateStore(path) as store:
        eng = Engine(cfg, store)
        eng.commit(eng.loss("collector-c1", 12, "spool-full", at(seconds=0)))
        eng.commit(eng.tick(at(seconds=3600)))
        assert eng.active("equipment:loss:collector-c1") is None
        eng.commit(eng.loss("gw-1", 3, "outbox", at(seconds=3600)))
    with StateStore(path) as store:  # the retained report and the next heartbeat arrive again
        eng = Engine(cfg, store)
        assert eng.loss("collector-c1", 12, "spool-full", at(seconds=4000)) == []
        assert eng.loss("gw-1", 3, "outbox", at(seconds=4000)) == []
        assert eng.active("equipment:loss:gw-1") == Level.YELLOW
        assert loss_keys(eng.tick(at(seconds=7200))) == [("equipment:loss:gw-1", WarningState.LIFTED, Level.YELLOW)]
