"""Landslide deformation: tangent angle, rate fallback, persistence, inverse velocity, rain coupling."""

from __future__ import annotations

import math
import random

import pytest

from rules.engine import Engine
from testing.rules import at, deployment, reading, site
from yujing.model import Level, Q, WarningState

B, Y, O, R = Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED
V0 = 2.0  # reference velocity, mm/day


def engine(**landslide) -> Engine:
    thr = {"reference_mm_per_day": V0, "rain_sites": ["RG-1"], **landslide}
    return Engine(deployment([site("HP-1", "landslide", name="观音村滑坡", landslide=thr), site("RG-1", "rain")]))


def creep(rate_mm_per_day: float, hours: int = 12, start_h: float = 0, s0: float = 100.0):
    """Hourly crack-meter readings moving at a constant rate."""
    return [reading("HP-1", "hp-1", Q.DISPLACEMENT_MM, s0 + rate_mm_per_day * h / 24, at(hours=start_h + h))
            for h in range(hours + 1)]


def feed(eng: Engine, rs) -> list:
    return [w for r in rs for w in eng.feed(r)]


def v_at(angle_deg: float) -> float:
    return V0 * math.tan(math.radians(angle_deg))


@pytest.mark.parametrize("angle, expected", [
    (39.9, None), (40.0, B), (40.1, B),  # ≈45° uniform velocity: blue (attention) from 40°
    (49.9, B), (50.0, Y), (50.1, Y),  # early acceleration
    (79.9, Y), (80.0, O), (80.1, O),  # mid acceleration
    (84.9, O), (85.0, R), (85.1, R),  # critical sliding
])
def test_improved_tangent_angle_grades_the_stage(angle, expected):
    eng = engine()
    v = v_at(angle) * (1 + 1e-9)  # "at" the cut within float rounding of the fitted slope
    ws = feed(eng, creep(v))
    assert eng.active("landslide:HP-1") == expected
    if expected:
        w = ws[0]
        assert w.values["tangent_angle_deg"] == pytest.approx(angle, abs=0.01)
        assert any(f"改进切线角 {angle:.1f}°" in e for e in w.evidence), w.evidence


@pytest.mark.parametrize("rate, expected", [
    (0.99, None), (1.0, B), (4.99, B), (5.0, Y), (9.99, Y), (10.0, O), (19.99, O), (20.0, R), (20.01, R),
])
def test_rate_thresholds_grade_a_site_without_a_reference_velocity(rate, expected):
    eng = engine(reference_mm_per_day=None,
                 rate_mm_per_day={"blue": 1.0, "yellow": 5.0, "orange": 10.0, "red": 20.0})
    feed(eng, creep(rate * (1 + 1e-9)))
    assert eng.active("landslide:HP-1") == expected


def test_a_level_needs_persistence_so_one_spike_is_not_a_red_warning():
    eng = engine()
    rs = creep(0.5)
    spike = reading("HP-1", "hp-1", Q.DISPLACEMENT_MM, rs[-1].value + 30.0, at(hours=13))
    ws = feed(eng, rs + [spike])
    assert ws == [] and eng.active("landslide:HP-1") is None


def test_no_rate_is_judged_before_an_hour_of_data():
    eng = engine()
    feed(eng, [reading("HP-1", "hp-1", Q.DISPLACEMENT_MM, 100 + 10 * i, at(minutes=10 * i)) for i in range(6)])
    assert eng.active("landslide:HP-1") is None


def test_noisy_creep_near_45_degrees_issues_once_and_does_not_flap():
    rnd = random.Random(7)
    eng = engine()
    rs = [reading("HP-1", "hp-1", Q.DISPLACEMENT_MM, 100 + V0 * h / 24 + rnd.gauss(0, 0.03), at(hours=h))
          for h in range(24 * 6)]
    ws = feed(eng, rs)
    assert [(w.state, w.level) for w in ws if w.key == "landslide:HP-1"][:1] == [(WarningState.ISSUED, B)]
    assert len(ws) <= 3, [(w.state, w.level, w.updated_at) for w in ws]


def test_inverse_velocity_estimates_time_to_failure_in_the_evidence():
    eng = engine()
    # v = 10 / (10 - t) mm/day: 1/v falls linearly and reaches 0 at day 10
    rs = []
    for i in range(int(9.8 * 24) + 1):
        d = i / 24
        rs.append(reading("HP-1", "hp-1", Q.DISPLACEMENT_MM, 100 - 10 * math.log(1 - d / 10), at(hours=i)))
    ws = feed(eng, rs)
    assert [w.level for w in ws] == [B, Y, O, R]
    red = ws[-1]
    true_h = (10 - 9.8) * 24
    assert red.values["failure_in_h"] == pytest.approx(true_h, abs=6.0)  # the 6 h smoothing lags a little
    assert any("反速度法" in e and "小时后可能失稳" in e for e in red.evidence)
    assert red.level == R  # the estimate is evidence, never the level itself


def test_a_rainfall_warning_at_a_coupled_gauge_raises_the_landslide_watch():
    eng = engine()
    rain = [reading("RG-1", "rg-1", Q.RAIN_MM, 10.0, at(minutes=30 * i)) for i in range(1, 6)]  # 50 mm in 2.5 h
    ws = feed(eng, rain)
    slide = [w for w in ws if w.key == "landslide:HP-1"]
    assert eng.active("rainstorm:RG-1") == O
    assert [(w.state, w.level) for w in slide] == [(WarningState.ISSUED, B)]
    assert any("关联雨量站" in e for e in slide[0].evidence)


def test_rain_raises_a_moving_slope_one_level_and_never_to_red_by_itself():
    eng = engine()
    feed(eng, creep(v_at(60)))  # yellow by deformation
    assert eng.active("landslide:HP-1") == Y
    feed(eng, [reading("RG-1", "rg-1", Q.RAIN_MM, 50.0, at(hours=12, minutes=5))])
    assert eng.active("landslide:HP-1") == O
    eng2 = engine()
    feed(eng2, creep(v_at(82)))  # orange by deformation
    feed(eng2, [reading("RG-1", "rg-1", Q.RAIN_MM, 100.0, at(hours=12, minutes=5))])
    assert eng2.active("rainstorm:RG-1") == R and eng2.active("landslide:HP-1") == O


def test_light_rain_below_the_coupling_level_does_not_raise_the_watch():
    eng = engine()
    feed(eng, [reading("RG-1", "rg-1", Q.RAIN_MM, 50.0, at(hours=0)), reading("RG-1", "rg-1", Q.RAIN_MM, 0.0,
                                                                                   at(hours=11))])
    assert eng.active("rainstorm:RG-1") is not None
    eng2 = engine(rain_level="red")
    feed(eng2, [reading("RG-1", "rg-1", Q.RAIN_MM, 60.0, at(hours=0))])
    assert eng2.active("rainstorm:RG-1") == O and eng2.active("landslide:HP-1") is None


def test_duplicate_and_late_displacement_readings_do_not_change_the_level():
    eng = engine()
    rs = creep(v_at(60))
    feed(eng, rs)
    before = eng.active("landslide:HP-1")
    ws = feed(eng, [rs[3], rs[-1], rs[-2]])
    assert ws == [] and eng.active("landslide:HP-1") == before == Y


def test_angle_cut_points_must_rise_with_the_level():
    from pydantic import ValidationError

    from rules.config import LandslideThresholds
    with pytest.raises(ValidationError, match="cut points must rise"):
        LandslideThresholds(angle_deg={"blue": 45, "yellow": 44})
