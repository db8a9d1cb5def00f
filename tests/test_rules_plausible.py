"""A broken sensor never drives or hides a hazard warning: implausible readings are excluded from every pack.

Whoever flags a reading (the edge's quality flag or the rules' own ``rules.plausible`` bounds), it raises
the equipment fault, never reaches a rain, level, landslide or fire accumulation, and the site's hazard
warnings say that data was excluded.
"""

from __future__ import annotations

import pytest

from rules.config import Resolver
from rules.engine import Engine
from testing.rules import at, deployment, device, reading, site
from yujing.errors import ConfigError
from yujing.model import Level, Q, Quality, WarningState

B, Y, O, R = Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED
LIMIT_5MIN = 422.0 * (300 / 3600) ** 0.475  # the world-record envelope (Jennings) for a 5-min period, ≈129 mm
RES = {"flood_limit_m": 312.0, "flood_control_high_m": 313.5, "design_flood_m": 314.6, "check_flood_m": 315.4,
       "crest_m": 316.0}


def engine(rules: dict | None = None, **site_thresholds) -> Engine:
    return Engine(deployment(
        [site("RG-1", "rain", name="庙垭村雨量站", **site_thresholds.get("rg", {})),
         site("SK-1", "reservoir", name="观音水库", reservoir=RES, **site_thresholds.get("sk", {})),
         site("LQ-1", "forest", name="林区"), site("RV-1", "river", name="新立河", river={"warning_m": 182.0})],
        rules=rules,
        gateways=[{"id": "gw-1", "heartbeat_s": 60, "devices": [
            device("rg-1", "RG-1", 300, "rain_mm"), device("rg-2", "RG-1", 300, "rain_count_mm"),
            device("sk-1", "SK-1", 300, "level_m")]}]))


def rain(value: float, minutes: float, sensor: str = "rg-1", **kw):
    return reading("RG-1", sensor, Q.RAIN_MM, value, at(minutes=minutes), **kw)


def level(value: float, minutes: float, **kw):
    return reading("SK-1", "sk-1", Q.LEVEL_M, value, at(minutes=minutes), **kw)


def feed(eng: Engine, rs) -> list:
    return [w for r in rs for w in eng.feed(r)]


# --- rain over a period: negative, and beyond the record envelope for the period -----------------------
@pytest.mark.parametrize("value, excluded", [
    (-0.1, True), (-5.0, True), (0.0, False),  # no negative rain
    (LIMIT_5MIN - 0.01, False), (LIMIT_5MIN, False), (LIMIT_5MIN + 0.01, True),  # 5-min record envelope
    (999.0, True),
])
def test_period_rain_outside_its_plausible_range_raises_the_fault_and_never_reaches_the_rainstorm(value, excluded):
    eng = engine()
    ws = feed(eng, [rain(value, 5)])
    assert (eng.active("equipment:rg-1:fault") is not None) == excluded
    if excluded:
        assert eng.active("rainstorm:RG-1") is None
        assert "rg-1" not in eng.packs["rain"].gauges.items  # the rain pack never saw it
        fault = next(w for w in ws if w.key == "equipment:rg-1:fault")
        assert "合理" in fault.evidence[0], fault.evidence
    else:
        got = eng.packs["rain"].gauges.items["rg-1"]
        assert sum(got.bins.values()) == pytest.approx(max(value, 0.0))


def test_999_mm_in_one_five_minute_step_issues_no_red_rainstorm_and_later_warnings_say_data_was_excluded():
    eng = engine()
    feed(eng, [rain(999.0, 5)])
    assert eng.active("rainstorm:RG-1") is None
    ws = feed(eng, [rain(10.0, 5 * i) for i in range(2, 8)])  # 60 mm of real rain in 30 min: orange
    assert eng.active("rainstorm:RG-1") == O
    w = next(w for w in ws if w.key == "rainstorm:RG-1")
    assert (w.state, w.level) == (WarningState.ISSUED, O)
    assert any("已剔除 1 条不可信数据" in e and "999" in e for e in w.evidence), w.evidence
    assert w.values["excluded_readings"] == 1.0


def test_negative_rain_cannot_cancel_real_rain_so_red_is_still_issued_and_orange_not_lifted():
    eng = engine()
    ws = feed(eng, [rain(10.0, 5 * i) for i in range(1, 7)])  # 60 mm: orange
    assert eng.active("rainstorm:RG-1") == O
    ws = feed(eng, [rain(-60.0, 35), rain(-1000.0, 40)])
    assert [w for w in ws if w.key == "rainstorm:RG-1"] == []
    ws = feed(eng, [rain(10.0, 5 * i) for i in range(9, 13)])  # another 40 mm: 100 mm in an hour
    assert eng.active("rainstorm:RG-1") == R
    red = [w for w in ws if w.key == "rainstorm:RG-1"][-1]
    assert any("已剔除 2 条不可信数据" in e for e in red.evidence), red.evidence
    for m in range(65, 65 + 120, 5):
        feed(eng, [rain(-50.0, m)])  # a broken gauge sending negatives for two hours lifts nothing
    assert eng.active("rainstorm:RG-1") == R


def test_a_negative_counter_value_is_excluded_and_never_becomes_the_baseline():
    eng = engine()
    rs = [reading("RG-1", "rg-2", Q.RAIN_COUNT_MM, v, at(minutes=m))
          for m, v in [(0, 100.0), (5, 101.0), (10, -3.0), (15, 102.0), (20, 103.0)]]
    feed(eng, rs)
    st = eng.packs["rain"].gauges.items["rg-2"]
    assert sum(st.bins.values()) == pytest.approx(3.0)  # 100 → 103: exactly what was measured
    assert eng.active("equipment:rg-2:fault") is None  # the fault lifted when a plausible value came back


# --- water levels -------------------------------------------------------------------------------
@pytest.mark.parametrize("value, excluded", [
    (8849.9, False), (8850.0, False), (8850.1, True), (9999.0, True),
    (-159.9, False), (-160.0, False), (-160.1, True),
])
def test_a_level_beyond_any_water_on_earth_is_excluded_by_default(value, excluded):
    eng = engine()  # a river gauge: no crest to bound it, only the defaults
    feed(eng, [reading("RV-1", "rv-1", Q.LEVEL_M, value, at(minutes=5))])
    assert (eng.active("equipment:rv-1:fault") is not None) == excluded
    assert (eng.active("river:RV-1") is None) == (excluded or value < 182.0)


@pytest.mark.parametrize("value, excluded", [(318.99, False), (319.0, False), (319.01, True), (9999.0, True)])
def test_a_site_sets_its_own_level_range_and_a_reading_above_it_issues_no_red(value, excluded):
    eng = engine(sk={"plausible": {"level_m": {"max": 319.0}}})
    feed(eng, [level(311.0, 0)])
    ws = feed(eng, [level(value, 5)])
    assert (eng.active("reservoir:SK-1") is None) == excluded
    assert (eng.active("equipment:sk-1:fault") is not None) == excluded
    if excluded:
        assert [w.key for w in ws] == ["equipment:sk-1:fault"]


def test_a_reservoir_gauge_reading_9999_m_mid_flood_neither_raises_red_nor_hides_the_real_level():
    eng = engine()
    feed(eng, [level(313.6, 0)])
    assert eng.active("reservoir:SK-1") == Y
    ws = feed(eng, [level(9999.0, 5), level(313.7, 10)])
    assert eng.active("reservoir:SK-1") == Y
    assert [w.key for w in ws] == ["equipment:sk-1:fault", "equipment:sk-1:fault"]  # raised, then lifted
    ws = feed(eng, [level(314.7, 15)])
    assert [(w.level, w.state) for w in ws] == [(O, WarningState.UPGRADED)]
    assert any("已剔除 1 条不可信数据" in e and "9999" in e for e in ws[0].evidence), ws[0].evidence


# --- whichever part flagged it -----------------------------------------------------------------
@pytest.mark.parametrize("quality", [Quality.OUT_OF_RANGE, Quality.STUCK, Quality.COMM_ERROR])
def test_a_reading_the_edge_flagged_is_excluded_and_named_in_the_hazard_warning(quality):
    eng = engine()
    feed(eng, [rain(80.0, 5, quality=quality)])
    assert eng.active("rainstorm:RG-1") is None
    assert eng.active("equipment:rg-1:fault") is not None
    [w] = [w for w in feed(eng, [rain(55.0, 10)]) if w.key == "rainstorm:RG-1"]
    assert any("已剔除 1 条不可信数据" in e and "边缘网关已标记" in e for e in w.evidence), w.evidence


def test_a_fire_detection_confidence_above_one_is_excluded_from_fire_grading():
    eng = engine()
    ws = feed(eng, [reading("LQ-1", "fc-1", Q.SMOKE, 1.5, at(minutes=m)) for m in (0, 1, 2)])
    assert eng.active("fire:LQ-1") is None
    assert eng.active("equipment:fc-1:fault") is not None and ws


def test_exclusions_are_forgotten_after_a_day_without_one():
    eng = engine()
    feed(eng, [rain(999.0, 5)])
    [w] = [w for w in feed(eng, [rain(60.0, 24 * 60 + 10)]) if w.key == "rainstorm:RG-1"]
    assert not any("已剔除" in e for e in w.evidence) and "excluded_readings" not in w.values


def test_exclusions_survive_a_restart(tmp_path):
    from rules.store import StateStore
    eng = engine()
    cfg = eng.config
    eng = Engine(cfg, store=StateStore(tmp_path / "s.sqlite"))
    eng.commit(feed(eng, [rain(999.0, 5)]))
    eng = Engine(cfg, store=StateStore(tmp_path / "s.sqlite"))
    [w] = [w for w in feed(eng, [rain(60.0, 10)]) if w.key == "rainstorm:RG-1"]
    assert any("已剔除 1 条不可信数据" in e for e in w.evidence), w.evidence


# --- configuration --------------------------------------------------------------------------------
def test_plausible_defaults_cover_the_example_gauge_types():
    from rules.config import PlausibleThresholds
    from rules.plausible import ENVELOPE_EXP
    assert ENVELOPE_EXP == 0.475
    p = PlausibleThresholds()
    assert (p.rain_mm.min, p.rain_mm.max, p.rain_mm.max_1h) == (0.0, 500.0, 422.0)
    assert p.rain_count_mm.min == 0.0 and (p.level_m.min, p.level_m.max) == (-160.0, 8850.0)
    assert p.of("smoke_confidence").max == 1.0 and p.of("no_such_quantity") is None


def test_a_site_overrides_one_bound_and_keeps_the_others():
    cfg = engine(sk={"plausible": {"level_m": {"max": 319.0}}}).config
    res = Resolver(cfg.rules, {s.id: s for s in cfg.sites})
    got = res.get("plausible", "SK-1")
    assert (got.level_m.min, got.level_m.max) == (-160.0, 319.0)
    assert res.get("plausible", "RG-1").level_m.max == 8850.0


def test_a_deployment_overrides_a_bound_for_every_site():
    eng = engine(rules={"plausible": {"rain_mm": {"max_1h": None}}})
    feed(eng, [rain(200.0, 5)])  # no envelope now: only the 500 mm cap
    assert eng.active("rainstorm:RG-1") == R


def test_the_old_equipment_ranges_setting_is_a_config_error_that_says_where_it_moved():
    with pytest.raises((ConfigError, ValueError), match="rules.plausible"):
        engine(rules={"equipment": {"ranges": {"rain_mm": [0, 500]}}})


def test_inverted_bounds_are_a_config_error():
    with pytest.raises((ConfigError, ValueError), match="must not be above"):
        engine(rules={"plausible": {"level_m": {"min": 10, "max": 5}}})


def test_a_site_bound_contradicting_the_deployments_is_refused_naming_the_site():
    with pytest.raises(ConfigError, match="site SK-1: thresholds.plausible"):
        engine(sk={"plausible": {"level_m": {"min": 9000.0}}})  # above the default max 8850


def test_the_demo_deployment_states_the_defaults_and_a_reservoir_range():
    from pathlib import Path

    from yujing.compose import load_config
    cfg = load_config(Path(__file__).resolve().parent.parent / "rules" / "examples" / "demo")
    res = Resolver(cfg.rules, {s.id: s for s in cfg.sites})
    assert cfg.rules.plausible == type(cfg.rules.plausible)()  # the example shows the built-in defaults
    got = res.get("plausible", "SK-GY-01").level_m
    assert (got.min, got.max) == (290.0, 319.0)
    eng = Engine(cfg)
    eng.feed(reading("SK-GY-01", "sk-gy-01", Q.LEVEL_M, 320.0, at()))
    assert eng.active("reservoir:SK-GY-01") is None and eng.active("equipment:sk-gy-01:fault") is not None


@pytest.mark.parametrize("value, excluded", [(325.99, False), (326.0, False), (326.01, True), (999.0, True)])
def test_a_reservoir_level_far_above_its_crest_is_excluded_even_without_a_configured_range(value, excluded):
    eng = engine()  # SK-1: crest 316 m, no plausible range of its own: at most 10 m above the crest
    ws = feed(eng, [level(value, 5)])
    assert (eng.active("reservoir:SK-1") is None) == excluded
    assert (eng.active("equipment:sk-1:fault") is not None) == excluded
    if excluded:
        assert "高于合理上限 326" in next(w for w in ws if w.key == "equipment:sk-1:fault").evidence[0]


def test_a_reservoirs_own_range_replaces_the_bound_from_its_crest():
    eng = engine(sk={"plausible": {"level_m": {"max": 340.0}}})
    feed(eng, [level(330.0, 5)])
    assert eng.active("reservoir:SK-1") == R and eng.active("equipment:sk-1:fault") is None
