"""Reservoir characteristic levels, rate of rise, and river warning/guarantee levels."""

from __future__ import annotations

import pytest

from rules.engine import Engine
from testing.rules import at, deployment, reading, site
from yujing.model import Level, Q, WarningState

B, Y, O, R = Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED
LEVELS = {"flood_limit_m": 312.0, "flood_control_high_m": 313.5, "design_flood_m": 314.6,
          "check_flood_m": 315.4, "crest_m": 316.5, "crest_margin_m": 0.5, "rise_rate_m_per_h": 0.3}


def engine(**over) -> Engine:
    return Engine(deployment([
        site("SK-1", "reservoir", name="观音水库", reservoir={**LEVELS, **over}),
        site("RV-1", "river", name="新立河", river={"warning_m": 182.0, "guarantee_m": 184.5}),
    ]))


def feed(eng: Engine, rs) -> list:
    return [w for r in rs for w in eng.feed(r)]


def level_m(value: float, minutes: float = 0, sid: str = "SK-1") -> object:
    return reading(sid, sid.lower(), Q.LEVEL_M, value, at(minutes=minutes))


@pytest.mark.parametrize("value, expected", [
    (311.99, None), (312.00, B), (312.01, B),  # 汛限水位
    (313.49, B), (313.50, Y), (313.51, Y),  # 防洪高水位
    (314.59, Y), (314.60, O), (314.61, O),  # 设计洪水位
    (315.39, O), (315.40, R), (315.41, R),  # 校核洪水位
])
def test_reservoir_levels_at_just_below_and_just_above_each_characteristic_level(value, expected):
    eng = engine()
    feed(eng, [level_m(value)])  # one reading: no rate of rise yet
    assert eng.active("reservoir:SK-1") == expected


def test_within_the_crest_margin_is_red_even_below_the_check_flood_level():
    eng = engine(check_flood_m=None)
    feed(eng, [level_m(315.99)])
    assert eng.active("reservoir:SK-1") == O
    ws = feed(eng, [level_m(316.00, minutes=1)])
    assert ws[-1].level == R and any("坝顶高程" in e for e in ws[-1].evidence)


@pytest.mark.parametrize("rise_per_h, expected", [(0.29, B), (0.30, O), (0.35, O)])
def test_a_fast_rise_above_the_flood_limit_level_is_orange(rise_per_h, expected):
    eng = engine()
    rs = [level_m(312.1 + rise_per_h * i / 6, minutes=10 * i) for i in range(7)]  # an hour, every 10 min
    ws = feed(eng, rs)
    assert eng.active("reservoir:SK-1") == expected
    if expected is O:
        assert any("上涨速率" in e and "0.30 m/h" in e for e in ws[-1].evidence)
        assert ws[-1].values["rise_m_per_h"] == pytest.approx(rise_per_h, abs=1e-6)


def test_a_fast_rise_below_the_flood_limit_level_is_not_a_warning():
    eng = engine()
    feed(eng, [level_m(310.0 + 0.5 * i / 6, minutes=10 * i) for i in range(7)])
    assert eng.active("reservoir:SK-1") is None


def test_a_level_hovering_at_the_flood_limit_does_not_flap():
    eng = engine()
    noisy = [312.0 + (0.02 if i % 2 else -0.02) for i in range(60)]  # ±2 cm around 汛限水位, every 10 min
    ws = feed(eng, [level_m(v, minutes=10 * i) for i, v in enumerate(noisy)])
    assert [(w.state, w.level) for w in ws] == [(WarningState.ISSUED, B)]


def test_a_falling_reservoir_steps_down_only_after_the_hold():
    eng = engine()  # reservoir hold: 30 min
    feed(eng, [level_m(313.6)])
    assert eng.active("reservoir:SK-1") == Y
    ws = feed(eng, [level_m(313.3, 10), level_m(313.3, 39)])
    assert ws == []
    ws = feed(eng, [level_m(313.3, 40)])
    assert [(w.state, w.level, w.version) for w in ws] == [(WarningState.DOWNGRADED, B, 2)]


@pytest.mark.parametrize("value, expected", [
    (181.99, None), (182.00, Y), (182.01, Y),  # 警戒水位 -> yellow
    (184.49, Y), (184.50, R), (184.51, R),  # 保证水位 -> red
])
def test_river_warning_and_guarantee_levels(value, expected):
    eng = engine()
    ws = feed(eng, [level_m(value, sid="RV-1")])
    assert eng.active("river:RV-1") == expected
    if expected:
        assert ws[0].title == f"新立河河道水位{expected.chinese}预警"


def test_a_reservoir_without_characteristic_levels_is_reported_not_guessed():
    eng = Engine(deployment([site("SK-2", "reservoir")]))
    assert any("SK-2" in p and "flood_limit_m" in p for p in eng.problems())
    feed(eng, [level_m(999.0, sid="SK-2")])
    assert eng.in_force() == {}


def test_levels_out_of_order_in_a_site_are_a_config_error(tmp_path):
    from yujing.compose import load_config
    from yujing.errors import ConfigError
    (tmp_path / "a.yaml").write_text(
        "areas: [{id: c, name: 县, tier: county}]\n"
        "sites:\n"
        "  - id: SK-1\n    name: x\n    kind: reservoir\n    area: c\n"
        "    thresholds:\n      reservoir: {flood_limit_m: 314.0, flood_control_high_m: 313.0}\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert "a.yaml:" in str(e.value) and "flood_limit_m (314.0) must not be above flood_control_high_m" in str(e.value)
