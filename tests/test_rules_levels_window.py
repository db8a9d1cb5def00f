"""The levels pack's rise window, kept by bisection, against the per-reading re-filtering it replaced.

Differential: random streams (in order, late, duplicate, after silences) through the real engine, with the old
code's list rebuilt beside it as the reference; the samples kept, the rate of rise and every warning must agree.
"""

from __future__ import annotations

import random

import pytest

from rules.engine import Engine
from rules.levels import rise_rate
from testing.rules import at, deployment, reading, site
from yujing.model import Q

LEVELS = {"flood_limit_m": 312.0, "flood_control_high_m": 313.5, "design_flood_m": 314.6,
          "check_flood_m": 315.4, "crest_m": 316.5, "crest_margin_m": 0.5, "rise_rate_m_per_h": 0.3,
          "rise_window_s": 1800.0}


def old_rise_rate(samples: list[list[float]], window_s: float) -> tuple[float, float] | None:
    """The scan the pack used before (the reference)."""
    if len(samples) < 2:
        return None
    t1, v1 = samples[-1]
    old = next((s for s in samples if s[0] >= t1 - window_s), samples[0])
    span = t1 - old[0]
    if span < window_s / 2:
        return None
    return (v1 - old[1]) / span * 3600.0, span


def old_feed(samples: list[list[float]], t: float, value: float, window_s: float) -> list[list[float]]:
    """The old pack's samples after one reading (the reference)."""
    if samples and t <= samples[-1][0]:
        if any(s[0] == t for s in samples):
            return samples
        return sorted([*samples, [t, value]])
    samples = [*samples, [t, value]]
    horizon = t - window_s * 1.5
    return [s for s in samples if s[0] >= horizon] or samples[-1:]


@pytest.mark.parametrize("seed", range(12))
def test_the_bisected_window_keeps_the_same_samples_rate_and_warnings_as_the_refiltered_one(seed):
    rnd = random.Random(seed)
    eng = Engine(deployment([site("SK-1", "reservoir", reservoir=LEVELS)]))
    pack = eng.packs["levels"]
    window = LEVELS["rise_window_s"]
    ref: list[list[float]] = []
    T0 = at().timestamp()  # noqa: N806 (the stream's origin, as testing.rules.at counts from it)
    t, level, warnings = 0.0, 311.8, []
    for _ in range(600):
        roll = rnd.random()
        if roll < 0.1 and ref:  # late, or a duplicate of a time already held
            ts = rnd.choice(ref)[0] - T0 if rnd.random() < 0.5 else t - rnd.uniform(1, window * 2)
        else:
            t += rnd.choice((5.0, 30.0, 60.0, 300.0, rnd.uniform(1, window * 3)))
            ts = t
        level = min(316.4, max(310.0, level + rnd.uniform(-0.04, 0.1)))  # within the crest: plausible
        value = round(level, 3)
        ts = round(ts, 3)
        warnings += [(w.key, w.level, w.state, w.evidence) for w in
                     eng.feed(reading("SK-1", "sk-1", Q.LEVEL_M, value, at(seconds=ts)))]
        ref = old_feed(ref, at(seconds=ts).timestamp(), value, window)
        samples = pack.gauges.items["sk-1"].samples
        assert samples == ref
        assert rise_rate(samples, window) == old_rise_rate(ref, window)
    assert warnings  # the stream crosses the levels: the comparison covered warnings, not only quiet readings
