"""Forest fire: detections confirmed by persistence or a second camera, graded by the danger rating."""

from __future__ import annotations

import pytest

from rules.engine import Engine
from testing.rules import at, deployment, reading, site
from yujing.model import Level, Q, WarningState

B, Y, O, R = Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED
KEY = "fire:LQ-1"


def engine(**fire) -> Engine:
    return Engine(deployment([site("LQ-1", "forest", name="双桥林区", **({"fire": fire} if fire else {}))]))


def smoke(seconds: float, camera: str = "cam-1", confidence: float = 0.8, quantity: Q = Q.SMOKE):
    return reading("LQ-1", camera, quantity, confidence, at(seconds=seconds), camera=camera)


def danger(rating: int, seconds: float = 0):
    return reading("LQ-1", "fwi", Q.FIRE_DANGER, float(rating), at(seconds=seconds))


def feed(eng: Engine, rs) -> list:
    return [w for r in rs for w in eng.feed(r)]


@pytest.mark.parametrize("times, expected", [
    ([0], B),  # a lone detection: 疑似火情
    ([0, 100], B),  # just below confirm_n = 3
    ([0, 100, 299], O),  # 3 within 300 s: confirmed; default danger rating 3 -> orange
    ([0, 100, 300], O),  # the window includes its edge
    ([0, 150, 301], B),  # the first has left the window when the third comes
    ([0, 100, 200, 250], O),
])
def test_one_camera_confirms_by_persistence(times, expected):
    eng = engine()
    feed(eng, [smoke(t) for t in times])
    assert eng.active(KEY) == expected


def test_two_cameras_confirm_at_once_and_the_evidence_names_them():
    eng = engine()
    ws = feed(eng, [smoke(0, "cam-1"), smoke(60, "cam-2")])
    assert [(w.state, w.level) for w in ws] == [(WarningState.ISSUED, B), (WarningState.UPGRADED, O)]
    assert any("cam-1, cam-2" in e for e in ws[-1].evidence)


def test_two_cameras_do_not_confirm_when_the_site_turns_it_off():
    eng = engine(two_cameras=False)
    feed(eng, [smoke(0, "cam-1"), smoke(60, "cam-2")])
    assert eng.active(KEY) == B


def test_low_confidence_detections_are_ignored():
    eng = engine()
    feed(eng, [smoke(t, confidence=0.49) for t in (0, 10, 20)] + [smoke(30, confidence=0.0)])
    assert eng.active(KEY) is None


@pytest.mark.parametrize("rating, confirmed", [(1, Y), (2, Y), (3, O), (4, O), (5, R)])
def test_the_days_danger_rating_grades_a_confirmed_fire(rating, confirmed):
    eng = engine()
    feed(eng, [danger(rating, 0)] + [smoke(t) for t in (10, 20, 30)])
    assert eng.active(KEY) == confirmed


@pytest.mark.parametrize("rating, expected", [(1, None), (2, None), (3, B), (4, O), (5, R)])
def test_the_danger_rating_alone_makes_a_fire_danger_warning(rating, expected):
    eng = engine()
    ws = feed(eng, [danger(rating)])
    assert eng.active("fire:LQ-1:danger") == expected
    if expected:
        assert ws[0].title == f"双桥林区森林火险{expected.chinese}预警"


def test_a_rating_change_regrades_a_fire_already_confirmed():
    eng = engine()
    feed(eng, [smoke(t) for t in (0, 10, 20)])
    assert eng.active(KEY) == O
    feed(eng, [danger(5, 30)])
    assert eng.active(KEY) == R


def test_a_fire_alarm_fades_on_the_clock_and_lifts_after_the_hold():
    eng = engine()  # window 300 s, hold 1800 s
    feed(eng, [smoke(t) for t in (0, 10, 20)])
    assert eng.tick(at(seconds=321)) == []  # every detection has left the window: the hold starts
    assert eng.tick(at(seconds=321 + 1799)) == []
    ws = eng.tick(at(seconds=321 + 1800))
    assert [(w.state, w.level) for w in ws] == [(WarningState.LIFTED, O)]
    assert eng.active(KEY) is None


def test_a_flame_detection_counts_like_smoke():
    eng = engine()
    ws = feed(eng, [smoke(0, quantity=Q.FLAME, confidence=0.95)])
    assert ws[0].level == B and any("明火" in e for e in ws[0].evidence)


def test_a_danger_rating_expires_when_no_newer_one_comes_and_the_danger_warning_lifts():
    eng = engine()  # ratings valid 36 h; hold 1800 s
    feed(eng, [danger(5, 0)])
    assert eng.active("fire:LQ-1:danger") == R
    assert eng.tick(at(hours=35)) == []  # still valid
    assert eng.tick(at(hours=36, seconds=1)) == []  # expired: the hold starts
    ws = eng.tick(at(hours=36, seconds=1801))
    assert [(w.key, w.state, w.level) for w in ws] == [("fire:LQ-1:danger", WarningState.LIFTED, R)]
    assert any("过期" in e for e in ws[0].evidence), ws[0].evidence
    # a fire confirmed now is graded by the default rating (3: orange), not the expired 5 (red)
    feed(eng, [smoke(36 * 3600 + 1900 + s) for s in (0, 10, 20)])
    assert eng.active(KEY) == O


def test_a_fresh_rating_keeps_the_danger_warning_in_force():
    eng = engine()
    feed(eng, [danger(5, 0), danger(5, 30 * 3600)])
    assert eng.tick(at(hours=60)) == [] and eng.active("fire:LQ-1:danger") == R
