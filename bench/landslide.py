"""Landslide red lead time: how long before failure the red warning goes out, and what smoothing costs.

    python bench/landslide.py                    # the shipped series (rules/examples/landslide-acceleration.csv)
    python bench/landslide.py --every-h 24       # the same slope read once a day (a 群测群防 monitor)

The shipped series accelerates as v = 10/(10 − d) mm/day towards failure at day 10 (1/v exactly linear
plus crack-meter noise), against the demo deployment's HP-GY-01 (reference 2 mm/day, red at 85°). The
ideal lead is from the instant the true velocity reaches the red cut point to failure; the lead is
from the red warning to failure; ``kept`` is their ratio (what smoothing and persistence leave).
``ttf_at_red_h`` is the inverse-velocity estimate carried in the red warning, against ``true_at_red_h``.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rules.backtest import replay  # noqa: E402
from rules.series import load_series  # noqa: E402
from yujing.compose import load_config  # noqa: E402
from yujing.model import Level  # noqa: E402

SERIES = ROOT / "rules" / "examples" / "landslide-acceleration.csv"
DEMO = ROOT / "rules" / "examples" / "demo"
FAILURE = datetime.fromisoformat("2026-07-24T00:00:00+08:00")  # day 10 of the series (make_series.py)
V_FAIL_MM_DAY = 10.0  # v = 10 / (10 − d): at time-to-failure τ days, v = 10/τ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=Path, default=SERIES)
    ap.add_argument("--config", type=Path, default=DEMO)
    ap.add_argument("--failure", type=datetime.fromisoformat, default=FAILURE)
    ap.add_argument("--every-h", type=float, default=1.0, help="keep one reading every this many hours")
    args = ap.parse_args()
    cfg = load_config(args.config)
    readings = load_series(args.series)
    if args.every_h > 1:
        step = timedelta(hours=args.every_h)
        t0 = readings[0].ts
        readings = [r for r in readings if (r.ts - t0) % step == timedelta(0)]
    ws = [w for w in replay(cfg, readings) if w.key.startswith("landslide:")]
    red = next((w for w in ws if w.level is Level.RED), None)
    site = ws[0].site if ws else "HP-GY-01"
    thr = cfg.site(site).thresholds.landslide
    v0 = thr.reference_mm_per_day if thr and thr.reference_mm_per_day else 2.0
    cut = (thr.angle_deg if thr and "angle_deg" in thr.model_fields_set else {}).get(Level.RED, 85.0)
    ideal_h = V_FAIL_MM_DAY / (v0 * math.tan(math.radians(cut))) * 24.0
    out: dict[str, object] = {
        "series": str(args.series.relative_to(ROOT) if args.series.is_relative_to(ROOT) else args.series),
        "readings": len(readings), "every_h": args.every_h,
        "levels": [f"{w.state.value}:{w.level.value}@{w.updated_at.isoformat()}" for w in ws],
        "ideal_red_lead_h": round(ideal_h, 2),
    }
    if red is not None:
        lead_h = (args.failure - red.updated_at).total_seconds() / 3600.0
        out.update({
            "red_at": red.updated_at.isoformat(), "red_lead_h": round(lead_h, 2),
            "kept": round(lead_h / ideal_h, 3),
            "ttf_at_red_h": red.values.get("failure_in_h"), "ttf_sigma_h": red.values.get("failure_sigma_h"),
            "true_at_red_h": round(lead_h, 2),
        })
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
