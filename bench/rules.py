"""Rules engine throughput: readings evaluated per second, in memory and with SQLite commits.

    python bench/rules.py [--gauges 300] [--hours 24] [--batch 50]

A deployment of N rain gauges (tipping counters, one reading a minute, with rain so windows fill),
N/3 reservoirs (levels) and N/3 landslide crack meters, replayed in time order. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rules.engine import Engine
from rules.store import StateStore
from testing.rules import at, deployment, reading, site
from yujing.model import Q


def build(n: int):
    sites = [site(f"RG-{i}", "rain") for i in range(n)]
    sites += [site(f"SK-{i}", "reservoir", reservoir={"flood_limit_m": 312.0, "design_flood_m": 314.0})
              for i in range(n // 3)]
    sites += [site(f"HP-{i}", "landslide", landslide={"reference_mm_per_day": 2.0}) for i in range(n // 3)]
    return deployment(sites)


def series(n: int, hours: int):
    for m in range(hours * 60):
        for i in range(n):
            yield reading(f"RG-{i}", f"rg-{i}", Q.RAIN_COUNT_MM, round(m * (0.05 + 0.002 * (i % 50)), 1),
                          at(minutes=m, seconds=i % 60))
        if m % 5 == 0:
            for i in range(n // 3):
                yield reading(f"SK-{i}", f"sk-{i}", Q.LEVEL_M, 311.0 + 0.001 * m, at(minutes=m))
                yield reading(f"HP-{i}", f"hp-{i}", Q.DISPLACEMENT_MM, 100 + 0.002 * m + 0.01 * math.sin(m),
                              at(minutes=m))


def run(n: int, hours: int, batch: int, store_path: Path | None, flush_s: float = 10.0) -> dict:
    """Commit every ``batch`` readings (lifecycles + outbox), pack state every ``flush_s``, as the service does."""
    cfg = build(n)
    readings = list(series(n, hours))
    store = StateStore(store_path) if store_path else None
    eng = Engine(cfg, store)
    warnings = 0
    t0 = time.perf_counter()
    pending = []
    flushed = time.monotonic()
    for k, r in enumerate(readings, 1):
        pending += eng.feed(r)
        if k % batch == 0:
            packs_too = time.monotonic() - flushed >= flush_s
            if packs_too:
                flushed = time.monotonic()
            eng.commit(pending, packs_too=packs_too)
            warnings += len(pending)
            pending = []
    eng.commit(pending)
    warnings += len(pending)
    dt = time.perf_counter() - t0
    if store:
        store.close()
    return {"readings": len(readings), "seconds": round(dt, 3), "readings_per_s": round(len(readings) / dt),
            "warnings": warnings, "persisted": store_path is not None, "commit_every": batch,
            "pack_state_every_s": flush_s}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gauges", type=int, default=300)
    p.add_argument("--hours", type=int, default=24)
    p.add_argument("--batch", type=int, default=50, help="readings per commit (an MQTT batch)")
    a = p.parse_args()
    out = {"gauges": a.gauges, "hours": a.hours, "in_memory": run(a.gauges, a.hours, a.batch, None)}
    with tempfile.TemporaryDirectory() as d:
        out["sqlite"] = run(a.gauges, a.hours, a.batch, Path(d) / "rules.state.sqlite")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
