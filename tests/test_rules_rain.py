"""Rainstorm and mountain-torrent rules: thresholds, counters (rollover, reset, gaps), duplicates."""

from __future__ import annotations

import sys

import pytest

from rules.engine import Engine
from rules.rain import KEEP_MIN, totals
from testing.rules import at, deployment, reading, site
from yujing.model import Level, Q, WarningState

B, Y, O, R = Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED


def engine(**thresholds) -> Engine:
    return Engine(deployment([site("RG-1", "rain", name="庙垭村雨量站", **thresholds)],
                             rules={"rain": {"counter_max_mm": 6553.6}}))


def steady(total_mm: float, hours: float, step_min: int = 10, start: float = 100.0, t0_h: float = 0.0):
    """A counter rising evenly by ``total_mm`` over ``hours``, read every ``step_min`` minutes."""
    n = int(hours * 60 / step_min)
    return [reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, start + total_mm * i / n, at(hours=t0_h, minutes=i * step_min))
            for i in range(n + 1)]


def feed(eng: Engine, readings) -> list:
    out = []
    for r in readings:
        out += eng.feed(r)
    return out


def level(eng: Engine, key: str = "rainstorm:RG-1") -> Level | None:
    return eng.active(key)


@pytest.mark.parametrize("total, hours, expected", [
    # blue: 50 mm in 12 h (6 h then holds half of it)
    (49.9, 12, None), (50.0, 12, B), (50.1, 12, B),
    # yellow: 50 mm in 6 h
    (49.9, 6, None), (50.0, 6, Y), (50.1, 6, Y),
    # orange: 50 mm in 3 h
    (49.9, 3, None), (50.0, 3, O), (50.1, 3, O),
    # red: 100 mm in 3 h
    (99.9, 3, O), (100.0, 3, R), (100.1, 3, R),
])
def test_rainstorm_levels_at_just_below_and_just_above_each_national_threshold(total, hours, expected):
    eng = engine()
    feed(eng, steady(total, hours))
    assert level(eng) == expected


def test_blue_warning_names_the_window_total_and_threshold_in_words():
    eng = engine()
    w = feed(eng, steady(52.4, 12))[-1]  # crosses 50 mm at 11:30: 52.4 × 69/72 = 50.22 mm
    assert w.updated_at == at(hours=11, minutes=30)
    assert (w.key, w.version, w.state, w.level, w.area) == ("rainstorm:RG-1", 1, WarningState.ISSUED, B, "v1")
    assert w.title == "庙垭村雨量站暴雨蓝色预警"
    assert "12小时累计雨量 50.2 mm ≥ 蓝色阈值 50.0 mm" in w.evidence
    assert w.values["rain_12h_mm"] == pytest.approx(52.4 * 69 / 72, abs=1e-3)
    assert w.values["rain_6h_mm"] == pytest.approx(26.2)


def test_upgrades_go_out_as_the_rain_gets_heavier():
    eng = engine()
    ws = feed(eng, steady(30.0, 6) + steady(60.0, 1, step_min=5, start=130.0, t0_h=6))
    assert [(w.state, w.level) for w in ws] == [
        (WarningState.ISSUED, B), (WarningState.UPGRADED, Y), (WarningState.UPGRADED, O)]


@pytest.mark.parametrize("values, expected_mm", [
    ([995.0, 999.0, 3.0, 4.0], 9.0),  # wraps to 0 at 1000: 4 + (1 + 3) + 1
    ([120.0, 125.0, 0.0, 2.0], 7.0),  # logger reset to zero: 5 + 0 + 2
    ([120.0, 125.0, 3.0, 4.0], 9.0),  # reset, then it had already counted 3 mm: 5 + 3 + 1
    ([10.0, 9000.0, 9001.0], 1.0),  # a jump no rain can make is dropped; counting resumes from it
    ([10.0, 12.0, 12.0, 12.0, 15.0], 5.0),  # dry spells: the counter stands still
])
def test_counter_rollover_resets_and_glitches(values, expected_mm):
    eng = Engine(deployment([site("RG-1", "rain")], rules={"rain": {"counter_max_mm": 1000.0}}))
    feed(eng, [reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, v, at(minutes=5 * i)) for i, v in enumerate(values)])
    st = eng.packs["rain"].gauges.items["rg-1"]
    assert sum(st.bins.values()) == pytest.approx(expected_mm)


def test_rain_after_a_data_gap_is_spread_over_the_gap_and_the_evidence_says_so():
    eng = engine()
    ws = feed(eng, [reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, 0.0, at(hours=0)),
                    reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, 60.0, at(hours=6))])
    # 60 mm over a 6 h gap: 30 mm in the last 3 h (not orange), 60 mm in 6 h: yellow
    assert [w.level for w in ws] == [Y]
    assert ws[0].values["rain_3h_mm"] == pytest.approx(30.0, abs=0.2)
    assert any("缺测" in e for e in ws[0].evidence)


def test_duplicate_and_out_of_order_counter_readings_add_nothing():
    eng = engine()
    rs = steady(30.0, 3)
    feed(eng, rs)
    before = dict(eng.packs["rain"].gauges.items["rg-1"].bins)
    feed(eng, [rs[5], rs[10], rs[-1]])  # re-sent and late
    assert eng.packs["rain"].gauges.items["rg-1"].bins == before


def test_period_rain_duplicates_count_once_and_late_ones_land_in_their_window():
    eng = engine()
    rs = [reading("RG-1", "rg-1", Q.RAIN_MM, 10.0, at(minutes=10 * i)) for i in range(1, 6)]  # 50 mm, 50 min
    feed(eng, rs[:2] + rs[3:])  # 40 mm, one report missing
    assert level(eng) is None
    feed(eng, [rs[0], rs[4]])  # re-sent: still 40
    assert level(eng) is None
    feed(eng, [rs[2]])  # the missing one arrives late: 50 mm within 3 h
    assert level(eng) == O


def test_hysteresis_keeps_a_warning_while_the_total_hovers_just_below_the_threshold():
    eng = engine()
    feed(eng, [reading("RG-1", "rg-1", Q.RAIN_MM, 50.0, at(hours=0)),
               reading("RG-1", "rg-1", Q.RAIN_MM, 0.0, at(hours=3, minutes=1))])  # 3 h window drops it
    assert level(eng) == O  # 50 mm still in 6 h: yellow called for, hold not over
    ws = feed(eng, [reading("RG-1", "rg-1", Q.RAIN_MM, 0.0, at(hours=4, minutes=2))])
    assert [(w.state, w.level) for w in ws] == [(WarningState.DOWNGRADED, Y)]


def test_a_warning_lifts_only_after_the_total_has_stayed_below_for_the_hold():
    eng = engine()
    feed(eng, steady(50.0, 12))
    assert level(eng) == B
    # dry: the 12 h total falls under 48 mm (hysteresis) about 30 min later; lift an hour after that
    dry = [reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, 150.0, at(hours=12, minutes=10 * i)) for i in range(1, 13)]
    ws = feed(eng, dry)
    lifts = [w for w in ws if w.state is WarningState.LIFTED]
    assert len(lifts) == 1 and lifts[0].level == B and lifts[0].version == 2
    assert lifts[0].title == "庙垭村雨量站暴雨蓝色预警解除"
    assert lifts[0].updated_at >= at(hours=13, minutes=20)


@pytest.mark.parametrize("mm_1h, expected", [
    (29.9, None), (30.0, O), (30.1, O),  # 准备转移 at 30 mm/1 h -> orange
    (44.9, O), (45.0, R), (45.1, R),  # 立即转移 at 45 mm/1 h -> red
])
def test_torrent_thresholds_of_a_village_map_prepare_to_orange_and_evacuate_to_red(mm_1h, expected):
    eng = engine(torrent={"prepare": {1: 30, 3: 50}, "evacuate": {1: 45, 3: 70}})
    ws = feed(eng, steady(mm_1h, 1, step_min=5))
    assert level(eng, "torrent:RG-1") == expected
    if expected is R:
        w = [w for w in ws if w.key == "torrent:RG-1"][-1]
        assert "山洪立即转移" in w.title and any("1小时累计雨量" in e and "立即转移" in e for e in w.evidence)


def test_no_torrent_warning_where_a_site_defines_no_torrent_thresholds():
    eng = engine()
    feed(eng, steady(100.0, 1, step_min=5))
    assert level(eng, "torrent:RG-1") is None and level(eng) == R


def test_a_site_overrides_one_threshold_and_keeps_the_rest():
    eng = engine(rain={"blue": {12: 40.0, 24: 60.0}})
    feed(eng, steady(40.0, 12))
    assert level(eng) == B
    thr = eng.packs["rain"].thresholds("RG-1")[0]
    assert thr.yellow == {6: 50.0} and thr.counter_max_mm == 6553.6


def test_a_drill_reading_makes_a_drill_warning():
    eng = engine()
    rs = [r.model_copy(update={"drill": True}) for r in steady(60.0, 3)]
    ws = feed(eng, rs)
    assert ws and all(w.drill for w in ws) and ws[-1].level == O


def test_drill_readings_on_a_live_system_never_touch_a_real_episode():
    """A gateway put in drill mode beside real ones: its readings make drill warnings of their own, never add to
    the real accumulation, and never turn a real warning into a drill one (it would reach the drill's people)."""
    eng = engine()
    real = feed(eng, steady(60.0, 12))  # blue: 60 mm in 12 h
    assert real and not any(w.drill for w in real) and level(eng) == B
    # a drill counter at the same gauge, racing up by 200 mm in 3 h over the same hours (red, were it real)
    drill = feed(eng, [r.model_copy(update={"id": r.id + "-d", "drill": True})
                       for r in steady(200.0, 3, start=5000.0, t0_h=9.0)])
    assert drill and all(w.drill for w in drill) and drill[-1].level == R
    assert level(eng) == B and eng.drills().active("rainstorm:RG-1") == R  # apart, each at its own level
    more = feed(eng, steady(60.0, 1, start=160.0, t0_h=12.0))  # real rain goes on: 60 mm more in 1 h
    assert more and not any(w.drill for w in more) and level(eng) == O


def test_every_warning_of_a_drill_run_is_a_drill_warning():
    eng = Engine(deployment([site("RG-1", "rain")]), drill=True)
    ws = feed(eng, steady(60.0, 3))
    assert ws and all(w.drill for w in ws)


def test_bad_quality_rain_readings_are_not_rain():
    from yujing.model import Quality
    eng = engine()
    feed(eng, [reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, 0.0, at()),
               reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, 500.0, at(minutes=5), quality=Quality.OUT_OF_RANGE)])
    assert level(eng) is None
    assert eng.active("equipment:rg-1:fault") == B


def lines_run(eng: Engine, readings) -> int:
    """How many lines of Python feeding ``readings`` executes: the work, counted rather than timed."""
    n = 0

    def trace(frame, event, arg):
        nonlocal n
        n += event == "line"
        return trace

    before = sys.gettrace()
    sys.settrace(trace)
    try:
        feed(eng, readings)
    finally:
        sys.settrace(before)
    return n


@pytest.mark.timeout(120)
def test_a_burst_of_readings_costs_the_same_per_reading_however_much_of_the_day_is_remembered():
    # a day of 5-minute reports, then a storm (or a replayed backlog) of one a second: the 600 readings
    # after 3,000 must not cost more than the first 600 (rescanning the day's readings made it quadratic)
    eng = engine()
    day = [reading("RG-1", "rg-1", Q.RAIN_MM, 0.0, at(minutes=5 * i)) for i in range(26 * 12)]
    burst = [reading("RG-1", "rg-1", Q.RAIN_MM, 0.01, at(hours=26, seconds=i)) for i in range(3600)]
    feed(eng, day)
    first = lines_run(eng, burst[:600])
    feed(eng, burst[600:3000])
    last = lines_run(eng, burst[3000:])
    assert last < 1.3 * first, (first, last)
    st = eng.packs["rain"].gauges.items["rg-1"]
    assert len(st.bins) <= KEEP_MIN and len(st.period) <= 25 * 12 + len(burst)  # bounded by 25 h of data
    assert level(eng) is None and totals(st)[1] == pytest.approx(36.0)


def test_a_period_reading_older_than_every_window_is_counted_and_not_remembered():
    eng = engine()
    feed(eng, [reading("RG-1", "rg-1", Q.RAIN_MM, 5.0, at(hours=h)) for h in (23, 25)])
    feed(eng, [reading("RG-1", "rg-1", Q.RAIN_MM, 5.0, at(hours=0)),  # arrives a day late
               reading("RG-1", "rg-1", Q.RAIN_MM, 5.0, at(hours=23))])  # re-sent within the day
    st = eng.packs["rain"].gauges.items["rg-1"]
    assert eng.packs["rain"].rejected == {"too-old": 1, "duplicate": 1}
    assert list(st.period) == [repr(at(hours=h).timestamp()) for h in (23, 25)]
    assert totals(st)[24] == pytest.approx(10.0)
