"""The rain pack grades from raw window sums against thresholds moved once (``reached_at``) instead of rounding the
sums per reading: differential against the rounding it replaced (``totals`` then ``grade_windows``)."""

from __future__ import annotations

import math
import random

import pytest

from rules.rain import WINDOWS_H, GaugeState, Grader, grade_windows, reached_at, totals
from yujing.model import Level


@pytest.mark.parametrize("seed", range(4))
def test_a_sum_reaches_the_moved_threshold_exactly_when_its_rounded_value_reaches_the_threshold(seed):
    rnd = random.Random(seed)
    for _ in range(3000):
        reach = rnd.choice((round(rnd.uniform(-5, 400), rnd.randint(0, 4)), rnd.uniform(0, 1), 0.0, 50.0 - 2.0,
                            0.0005, 0.0004999, 1e-9))
        edge = reached_at(reach)
        for x in (edge, math.nextafter(edge, -math.inf), reach, reach - 0.0005, reach - 0.0005000001,
                  math.nextafter(reach - 0.0005, math.inf), rnd.uniform(-1, reach + 1), -0.0, 0.0):
            if math.isinf(x):
                continue
            assert (x >= edge) == (round(max(x, 0.0), 3) >= reach), (reach, x, edge)


@pytest.mark.parametrize("seed", range(4))
def test_the_grader_gives_the_level_grade_windows_gives_on_the_rounded_totals(seed):
    rnd = random.Random(seed)
    for _ in range(2000):
        table = {lv: {h: round(rnd.uniform(1, 120), rnd.choice((0, 1, 3)))
                      for h in rnd.sample(WINDOWS_H, rnd.randint(1, 3))}
                 for lv in rnd.sample(list(Level), rnd.randint(1, 4))}
        hysteresis = rnd.choice((0.0, 2.0, 1.5, 0.05))
        grader = Grader(table, hysteresis)
        st = GaugeState(sums={h: rnd.choice((rnd.uniform(-1e-9, 150), float(rnd.randint(0, 120)) - 1e-12,
                                             float(rnd.randint(0, 120)) + 0.0004999))
                              for h in WINDOWS_H})
        current = rnd.choice((None, *Level))
        assert grader.level(st, current) == grade_windows(totals(st), table, current, hysteresis)[0]
