"""Sparse landslide readings: a daily 群测群防 reading or a GNSS fix every few hours is graded over its last
readings (smoothing and persistence in readings, not hours); too sparse to grade, the maintainer is told."""

from __future__ import annotations

import math

import pytest

from rules.engine import Engine
from testing.rules import at, deployment, reading, site
from yujing.model import Hazard, Level, Q, WarningState

V0 = 2.0  # reference velocity, mm/day


def engine(**landslide) -> Engine:
    return Engine(deployment([site("HP-1", "landslide", name="观音村滑坡",
                                   landslide={"reference_mm_per_day": V0, **landslide})]))


def read_every(eng: Engine, every_h: float, rate_mm_day: float, n: int) -> list:
    out = []
    for i in range(n):
        h = i * every_h
        out += eng.feed(reading("HP-1", "hp-1", Q.DISPLACEMENT_MM, 100 + rate_mm_day * h / 24, at(hours=h)))
    return out


def v_at(angle_deg: float) -> float:
    return V0 * math.tan(math.radians(angle_deg)) * (1 + 1e-9)


@pytest.mark.parametrize("every_h", [4.0, 6.0, 8.0, 12.0, 24.0, 48.0, 84.0])
@pytest.mark.parametrize("angle, expected", [(49.9, Level.BLUE), (50.0, Level.YELLOW), (85.1, Level.RED)])
def test_a_sparsely_read_slope_is_graded_over_its_last_readings(every_h, angle, expected):
    eng = engine()
    ws = read_every(eng, every_h, v_at(angle), 6)  # 3 readings for a rate, 3 rates for persistence
    assert eng.active("landslide:HP-1") == expected
    w = [w for w in ws if w.key == "landslide:HP-1"][-1]
    assert w.values["rate_points"] == 3.0 and w.values["rate_window_h"] == pytest.approx(2 * every_h)
    assert any(f"近 {2 * every_h:.0f} 小时 (3 次读数) 平均速率" in e for e in w.evidence), w.evidence


def test_a_daily_reading_of_a_slope_at_many_times_its_reference_velocity_is_red_after_three_readings():
    eng = engine()
    ws = read_every(eng, 24.0, 20 * V0, 5)
    slide = [(w.state, w.level, w.updated_at) for w in ws if w.key == "landslide:HP-1"]
    # readings 3, 4 and 5 each give a rate at 87°: the third of them is the third in a row
    assert slide == [(WarningState.ISSUED, Level.RED, at(hours=96))]


@pytest.mark.parametrize("persist_n, first_h", [(1, 48), (2, 72), (3, 96)])
def test_persistence_is_counted_in_readings_whatever_their_interval(persist_n, first_h):
    eng = engine(persist_n=persist_n)
    ws = read_every(eng, 24.0, 20 * V0, 5)
    assert [w.updated_at for w in ws if w.key == "landslide:HP-1"][:1] == [at(hours=first_h)]


@pytest.mark.parametrize("every_d, graded", [(3.49, True), (3.5, True), (3.51, False), (10.0, False)])
def test_a_sensor_too_sparse_to_grade_says_so_to_its_maintainer(every_d, graded):
    eng = engine()  # at most 7 days across the last 3 readings
    ws = read_every(eng, every_d * 24, 20 * V0, 5)
    notice = eng.active("equipment:hp-1:sampling")
    if graded:
        assert eng.active("landslide:HP-1") == Level.RED and notice is None
        return
    assert eng.active("landslide:HP-1") is None and notice == Level.BLUE
    w = next(w for w in ws if w.key == "equipment:hp-1:sampling")
    assert w.hazard is Hazard.EQUIPMENT  # routed to maintainers
    assert "采样过稀" in w.title and any("无法判断滑坡变形速率" in e for e in w.evidence), w.evidence


def test_the_sampling_notice_lifts_once_the_sensor_is_read_often_enough():
    eng = engine()
    ws = read_every(eng, 24 * 5, 20 * V0, 3)
    assert eng.active("equipment:hp-1:sampling") == Level.BLUE
    t0 = 10 * 24
    for h in (t0 + 24, t0 + 48, t0 + 72):  # daily now
        ws += eng.feed(reading("HP-1", "hp-1", Q.DISPLACEMENT_MM, 100 + 20 * V0 * h / 24, at(hours=h)))
    assert eng.active("equipment:hp-1:sampling") is None
    assert [w.state for w in ws if w.key == "equipment:hp-1:sampling"] == [WarningState.ISSUED, WarningState.LIFTED]


def test_hourly_readings_still_smooth_over_six_hours():
    eng = engine()
    read_every(eng, 1.0, v_at(60.0), 13)
    last = eng.packs["landslide"].sensors.items["hp-1"].last
    assert last["rate_points"] == 7.0 and last["rate_window_h"] == 6.0


@pytest.mark.parametrize("interval_d, reported", [(3.5, False), (3.51, True), (30.0, True)])
def test_a_device_configured_too_sparse_to_grade_is_reported_as_a_problem(interval_d, reported):
    from testing.rules import device
    eng = Engine(deployment([site("HP-1", "landslide", landslide={"reference_mm_per_day": V0})],
                            gateways=[{"id": "gw-1", "devices": [
                                device("hp-1", "HP-1", interval_d * 86400, "displacement_mm")]}]))
    found = [p for p in eng.problems() if "cannot be graded at this sampling rate" in p]
    assert bool(found) == reported, eng.problems()
