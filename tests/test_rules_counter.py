"""Tipping-bucket counters: rollover, logger reset and a single bad reading, told apart by the readings after.

No handling may add rain the counter did not measure, and a rejected reading never becomes the baseline.
"""

from __future__ import annotations

import pytest

from rules.config import RainThresholds
from rules.engine import Engine
from testing.rules import at, deployment, reading, site
from yujing.model import Level, Q

TOP = 6553.6  # the documented default: 65536 tips × 0.1 mm


def engine(**rain) -> Engine:
    return Engine(deployment([site("RG-1", "rain", rain=rain)] if rain else [site("RG-1", "rain")]))


def counted(values: list[float], step_min: float = 5, **rain) -> tuple[float, Engine]:
    eng = engine(**rain)
    for i, v in enumerate(values):
        eng.feed(reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, v, at(minutes=step_min * i)))
    st = eng.packs["rain"].gauges.items["rg-1"]
    return round(sum(st.bins.values()), 6), eng


def test_counter_max_has_the_documented_default():
    assert RainThresholds().counter_max_mm == TOP


@pytest.mark.parametrize("values, expected_mm", [
    # a rollover with the default counter_max (no configuration at all)
    ([6552.0, 6553.0, 0.4, 1.0], 1.0 + 1.0 + 0.6),  # 6553 → top (0.6) → 0.4 → 1.0
    ([6553.5, 0.0, 0.5], 0.1 + 0.5),  # wrapping exactly at the top
    ([6553.0, 6553.5, 0.2, 0.3], 0.5 + 0.3 + 0.1),  # the wrap (0.1) and the count since (0.2), not just 0.2
])
def test_a_rollover_confirmed_by_the_next_reading_counts_the_wrap(values, expected_mm):
    got, _ = counted(values)
    assert got == pytest.approx(expected_mm, abs=1e-6)


@pytest.mark.parametrize("values, expected_mm", [
    ([6553.0, 0.0, 6553.2], 0.2),  # a zero near the top, then the old count goes on: no phantom wrap
    ([6553.0, 0.0, 6553.2, 6553.5], 0.5),
    ([100.0, 101.0, 0.0, 102.0], 2.0),  # a zero mid-count: not a reset
    ([100.0, 101.0, 3000.0, 101.5], 1.5),  # a spike up: no jump baseline, nothing invented afterwards
    ([100.0, 101.0, 3000.0, 101.5, 102.0], 2.0),
    ([100.0, 101.0, 50.0, 20.0, 102.0], 2.0),  # two bad readings in a row, then the count goes on
])
def test_a_single_bad_reading_is_dropped_and_never_becomes_the_baseline(values, expected_mm):
    got, eng = counted(values)
    assert got == pytest.approx(expected_mm, abs=1e-6)
    st = eng.packs["rain"].gauges.items["rg-1"]
    assert st.last_count == values[-1] and st.pending == []


def test_a_glitch_no_longer_brings_a_warning_early():
    # 48 mm of real rain in 3 h, read every 5 min, with one garbage value near the start: never orange
    real = [100.0 + 48.0 * i / 36 for i in range(37)]
    values = real[:3] + [0.0] + real[3:]
    eng = engine()
    for i, v in enumerate(values):
        eng.feed(reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, v, at(minutes=5 * i)))
    assert eng.active("rainstorm:RG-1") is None
    tot = eng.packs["rain"].gauges.items["rg-1"]
    assert sum(tot.bins.values()) == pytest.approx(48.0)


@pytest.mark.parametrize("values, expected_mm", [
    ([120.0, 125.0, 0.0, 2.0], 7.0),  # reset to zero: 5 + 0 + 2
    ([120.0, 125.0, 3.0, 4.0], 9.0),  # reset, and it had counted 3 mm since: 5 + 3 + 1
    ([120.0, 125.0, 20.8, 21.0], 5.0 + 20.8 + 0.2),  # at the rain a 5-min interval can hold (250 mm/h)
    ([120.0, 125.0, 20.9, 21.0], 5.0 + 0.1),  # above it: a new count, not rain
    ([120.0, 125.0, 5000.0, 5001.0], 5.0 + 1.0),  # a swapped logger's count is no rain
])
def test_a_logger_reset_confirmed_by_the_next_reading_counts_only_measured_rain(values, expected_mm):
    got, _ = counted(values)
    assert got == pytest.approx(expected_mm, abs=1e-6)


@pytest.mark.parametrize("values, expected_mm", [
    ([6553.0, 0.4], 0.0),  # the last reading is a break: held, nothing counted yet
    ([100.0, 0.0], 0.0),
    ([100.0, 9000.0], 0.0),
])
def test_a_break_with_no_reading_after_it_adds_nothing_yet(values, expected_mm):
    got, eng = counted(values)
    assert got == expected_mm
    assert eng.packs["rain"].gauges.items["rg-1"].pending


def test_without_a_counter_max_a_drop_is_a_reset_never_a_wrap():
    got, _ = counted([6553.0, 0.4, 1.0], counter_max_mm=None)
    assert got == pytest.approx(1.0)  # 0.4 since the reset, + 0.6


def test_a_gauge_with_half_millimetre_tips_wraps_at_its_own_counter_max():
    got, _ = counted([32767.0, 32767.5, 0.5, 1.0], counter_max_mm=32768.0)
    assert got == pytest.approx(0.5 + 1.0 + 0.5)


def test_the_evidence_names_a_dropped_glitch_and_a_confirmed_rollover():
    _, eng = counted([6552.0, 0.0, 6553.0, 0.5, 1.0] + [1.0 + 10 * i for i in range(1, 8)])
    assert eng.active("rainstorm:RG-1") == Level.ORANGE
    st = eng.packs["rain"].gauges.items["rg-1"]
    texts = " ".join(str(e[1]) for e in st.events)
    assert "单个异常读数 0.0 mm" in texts and "计数器回绕" in texts and "后续读数已印证" in texts


def test_the_held_break_survives_a_restart(tmp_path):
    from rules.store import StateStore
    cfg = engine().config
    eng = Engine(cfg, store=StateStore(tmp_path / "s.sqlite"))
    for i, v in enumerate([6553.0, 0.0]):
        eng.commit(eng.feed(reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, v, at(minutes=5 * i))))
    eng = Engine(cfg, store=StateStore(tmp_path / "s.sqlite"))
    eng.feed(reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, 6553.3, at(minutes=10)))
    assert sum(eng.packs["rain"].gauges.items["rg-1"].bins.values()) == pytest.approx(0.3)
