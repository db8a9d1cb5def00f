"""The shared warning lifecycle: pending (for), upgrades at once, downgrades and lifts after a hold."""

from __future__ import annotations

import pytest

from rules.config import Mechanics
from rules.lifecycle import Lifecycle, grade
from yujing.model import Level, WarningState

B, Y, O, R = Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED
ISS, UP, DOWN, LIFT = WarningState.ISSUED, WarningState.UPGRADED, WarningState.DOWNGRADED, WarningState.LIFTED


def run(steps: list[tuple[float, Level | None]], mech: Mechanics) -> list[tuple[float, WarningState, Level | None]]:
    lc = Lifecycle()
    out = []
    for t, want in steps:
        st = lc.update(want, t, mech)
        if st is not None:
            out.append((t, st, lc.active))
    return out


@pytest.mark.parametrize("name, mech, steps, expected", [
    ("issue at once without for", Mechanics(for_s=0, clear_after_s=600),
     [(0, None), (60, B)], [(60, ISS, B)]),
    ("pending until for has passed", Mechanics(for_s=300, clear_after_s=600),
     [(0, Y), (120, Y), (299, Y), (300, Y)], [(300, ISS, Y)]),
    ("pending resets when the condition clears", Mechanics(for_s=300, clear_after_s=600),
     [(0, Y), (200, None), (300, Y), (599, Y), (600, Y)], [(600, ISS, Y)]),
    ("pending issues at the level called for when for has passed", Mechanics(for_s=300, clear_after_s=600),
     [(0, B), (200, O), (300, Y)], [(300, ISS, Y)]),
    ("upgrade goes out at once", Mechanics(clear_after_s=3600),
     [(0, B), (10, Y), (20, R)], [(0, ISS, B), (10, UP, Y), (20, UP, R)]),
    ("lift only after the hold", Mechanics(clear_after_s=600),
     [(0, Y), (100, None), (699, None), (700, None)], [(0, ISS, Y), (700, LIFT, None)]),
    ("downgrade to the highest level called for during the hold", Mechanics(clear_after_s=600),
     [(0, R), (100, Y), (200, O), (300, B), (800, B)], [(0, ISS, R), (800, DOWN, O)]),
    ("a return to the level during the hold restarts it", Mechanics(clear_after_s=600),
     [(0, O), (100, Y), (500, O), (600, Y), (1100, Y), (1200, Y)], [(0, ISS, O), (1200, DOWN, Y)]),
    ("zero hold lifts at once", Mechanics(clear_after_s=0),
     [(0, Y), (10, None)], [(0, ISS, Y), (10, LIFT, None)]),
    ("a late evaluation counts as now", Mechanics(clear_after_s=600),
     [(1000, Y), (500, None), (1599, None), (1600, None)], [(1000, ISS, Y), (1600, LIFT, None)]),
])
def test_lifecycle(name, mech, steps, expected):
    assert run(steps, mech) == expected, name


def test_flapping_input_at_a_threshold_issues_once_and_lifts_once():
    steps = [(t * 60.0, Y if t % 2 == 0 else None) for t in range(120)] + [(120 * 60 + 3600.0, None)]
    got = run(steps, Mechanics(clear_after_s=1800))
    assert [s for _, s, _ in got] == [ISS, LIFT]


def test_versions_keep_rising_across_episodes():
    lc = Lifecycle()
    m = Mechanics(clear_after_s=0)
    seen = []
    for t, want in [(0, B), (1, None), (2, Y), (3, R), (4, None)]:
        if lc.update(want, t, m):
            seen.append(lc.version)
    assert seen == [1, 2, 3, 4, 5]


def test_state_round_trips_through_json():
    lc = Lifecycle()
    lc.update(O, 0, Mechanics())
    lc.update(B, 100, Mechanics(clear_after_s=600))
    again = Lifecycle.from_json(lc.to_json())
    assert again == lc
    assert again.update(None, 700, Mechanics(clear_after_s=600)) is DOWN and again.active is B


@pytest.mark.parametrize("value, current, expected", [
    (49.9, None, None), (50.0, None, B), (50.1, None, B),
    (48.1, B, B), (48.0, B, B), (47.9, B, None),  # hysteresis 2.0 keeps blue down to 48
    (99.9, B, Y), (100.0, B, R), (98.5, R, R), (97.9, R, Y),
])
def test_grade_with_hysteresis(value, current, expected):
    assert grade(value, {B: 50.0, Y: 60.0, R: 100.0}, current, 2.0) == expected
