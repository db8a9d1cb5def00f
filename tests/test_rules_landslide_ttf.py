"""Inverse-velocity time to failure: not overstated, with its uncertainty; and the red lead time it is meant
to serve is not eaten by smoothing and persistence."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from rules.engine import Engine
from testing.rules import at, deployment, reading, site
from yujing.model import Level, Q

ROOT = Path(__file__).resolve().parent.parent
V0 = 2.0
RED_V = V0 * math.tan(math.radians(85.0))


def engine(**landslide) -> Engine:
    return Engine(deployment([site("HP-1", "landslide", landslide={"reference_mm_per_day": V0, **landslide})]))


def towards_failure(fail_d: float, every_h: float = 1.0, noise_mm: float = 0.0, seed: int = 1):
    """Quiet creep, then v = fail_d / (fail_d − d) mm/day from day 3: 1/v exactly linear, failure at ``fail_d``."""
    rnd = random.Random(seed)
    out = []
    i = 0
    while (d := i * every_h / 24) < fail_d - 0.02:
        s = 0.5 * d if d < 3 else 1.5 + fail_d * math.log((fail_d - 3) / (fail_d - d))
        out.append(reading("HP-1", "hp-1", Q.DISPLACEMENT_MM, 100 + s + rnd.gauss(0, noise_mm) if noise_mm else
                           100 + s, at(hours=i * every_h)))
        i += 1
    return out


def red_of(eng: Engine, rs):
    ws = [w for r in rs for w in eng.feed(r) if w.key == "landslide:HP-1"]
    return next(w for w in ws if w.level is Level.RED)


@pytest.mark.parametrize("fail_d", [8.0, 10.0, 14.0])
def test_time_to_failure_at_red_is_not_overstated_on_an_exactly_linear_inverse_velocity(fail_d):
    red = red_of(engine(), towards_failure(fail_d))
    true_h = (at(hours=fail_d * 24) - red.updated_at).total_seconds() / 3600
    # stamped at the window's end, the fit placed failure about half the time left too late
    assert red.values["failure_in_h"] == pytest.approx(true_h, rel=0.15)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_time_to_failure_carries_its_uncertainty_and_the_truth_lies_within_it(seed):
    red = red_of(engine(), towards_failure(10.0, noise_mm=0.03, seed=seed))
    true_h = (at(hours=240) - red.updated_at).total_seconds() / 3600
    sigma = red.values["failure_sigma_h"]
    assert 0 < sigma < 3
    assert abs(red.values["failure_in_h"] - true_h) <= 3 * sigma + 0.6  # ± the 0.1 h rounding and hour steps
    assert any(f"±{sigma:.1f} 小时" in e for e in red.evidence), red.evidence


@pytest.mark.parametrize("fail_d", [6.0, 8.0, 10.0, 14.0])
def test_smoothing_and_persistence_keep_more_than_half_the_red_lead_time(fail_d):
    red = red_of(engine(), towards_failure(fail_d))
    lead_h = (at(hours=fail_d * 24) - red.updated_at).total_seconds() / 3600
    ideal_h = fail_d / RED_V * 24  # the true velocity reaches the red cut point this long before failure
    assert lead_h >= 0.55 * ideal_h, (lead_h, ideal_h)  # they cost less than half of it
    assert lead_h <= ideal_h  # never red before the slope is red


def test_a_quiet_noisy_creep_is_not_pushed_up_by_carrying_its_acceleration_forward():
    rnd = random.Random(7)
    eng = engine()
    rs = [reading("HP-1", "hp-1", Q.DISPLACEMENT_MM, 100 + 0.9 * V0 * h / 24 + rnd.gauss(0, 0.05), at(hours=h))
          for h in range(24 * 6)]
    ws = [w for r in rs for w in eng.feed(r)]
    assert all(w.level is Level.BLUE for w in ws if w.key == "landslide:HP-1")


def test_the_benchmark_reports_the_red_lead_time_on_the_shipped_series():
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "landslide.py")], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["series"] == "rules/examples/landslide-acceleration.csv"
    assert got["ideal_red_lead_h"] == pytest.approx(10.5, abs=0.01)
    assert got["red_lead_h"] >= 0.6 * got["ideal_red_lead_h"] and got["kept"] >= 0.6
    assert abs(got["ttf_at_red_h"] - got["true_at_red_h"]) <= 3 * got["ttf_sigma_h"] + 0.6
    readme = (ROOT / "rules" / "README.md").read_text(encoding="utf-8")
    assert f"red lead time {got['red_lead_h']:.1f} h" in readme  # the README states what the bench measures


def test_time_to_failure_due_when_the_state_was_saved_is_the_same_after_a_restart(tmp_path):
    from rules.landslide import LandslidePack, time_to_failure
    from rules.store import StateStore

    cfg = deployment([site("HP-1", "landslide", landslide={"reference_mm_per_day": V0})])
    series = towards_failure(10.0)
    with StateStore(tmp_path / "rules.state.sqlite") as store:
        eng = Engine(cfg, store)
        pack = eng.packs["landslide"]
        for r in series[:200]:  # accelerating: the fit is due, made only when a message needs it
            eng.feed(r)
        st = pack.sensors.items["hp-1"]  # type: ignore[attr-defined]
        assert st.fit_t and "failure_in_h" not in st.last
        eng.commit([])
        want = time_to_failure(st.rates, st.fit_t[0])
    with StateStore(tmp_path / "rules.state.sqlite") as store:
        again = Engine(cfg, store).packs["landslide"].sensors.items["hp-1"]  # type: ignore[attr-defined]
        got = LandslidePack.figures(again)
    assert want is not None
    assert got["failure_in_h"] == round(want.in_h, 1) and got["failure_fit_n"] == want.n
    assert got == LandslidePack.figures(st)
