"""Write the shipped example series (deterministic): ``python rules/examples/make_series.py``.

rainstorm-3days.csv — gauge RG-SQ-01 (tipping counter, 0.1 mm per tip, 16-bit register so it
    rolls over at 6553.5 mm), every 5 minutes for three days from 2026-07-14 00:00 Beijing time:
    light rain on day 1; a night of steady rain (blue); a morning downpour (yellow, orange, torrent
    准备转移 then 立即转移); the logger restarts (counter reset) at 12:30 and the link drops for an
    hour at 14:00; the rain eases and the warnings step down and lift on day 3. A few readings are
    sent twice and one arrives late, as the edge outbox may do.
landslide-acceleration.csv — crack meter hp-gy-01 at HP-GY-01 (reference 2 mm/day), hourly for
    9.8 days: quiet creep, then accelerating towards failure on day 10 as v = 10/(10 − t) mm/day
    (1/v falls linearly: the inverse-velocity method should place failure near day 10).
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
BJ = timezone(timedelta(hours=8))
T0 = datetime(2026, 7, 14, 0, 0, tzinfo=BJ)


def rain_rate_mm_per_h(h: float) -> float:
    """Rain intensity at hour ``h`` since T0."""
    if 6 <= h < 18:
        return 2.0  # day 1: light rain, 24 mm in 12 h
    if 20 <= h < 32:
        return 5.0  # night: 60 mm in 12 h -> blue
    if 32 <= h < 35:
        return 20.0  # 08:00-11:00 day 2: 60 mm in 3 h -> yellow, orange; torrent prepare
    if 35 <= h < 36:
        return 46.0  # 11:00-12:00: 46 mm in 1 h -> torrent evacuate
    if 36 <= h < 44:
        return 3.0
    return 0.0


def rainstorm() -> str:
    lines = ["# rainstorm-3days: gauge RG-SQ-01, tipping counter (0.1 mm/tip, rolls over at 6553.5 mm), every 5 min",
             "ts,site,sensor,quantity,value,unit,gateway"]
    counter, exact = 6500.0, 6500.0  # near the top of the 16-bit register: it rolls over on day 2
    reset_at, gap = 36.5, (38.0, 39.0)
    late = None
    for i in range(72 * 12 + 1):
        h = i / 12
        if i:
            exact += rain_rate_mm_per_h(h - 1 / 12) / 12
        if abs(h - reset_at) < 1e-9:
            exact = rain_rate_mm_per_h(h - 1 / 12) / 12  # the logger restarted: counts from zero again
        counter = math.floor(exact * 10 + 1e-6) / 10 % 6553.6
        if gap[0] < h < gap[1]:
            continue
        ts = (T0 + timedelta(hours=h)).isoformat()
        line = f"{ts},RG-SQ-01,rg-sq-01,rain_count_mm,{counter:.1f},mm,gw-xl"
        if i == 30 * 12:
            late = line  # this one is delivered an hour late
            continue
        lines.append(line)
        if i % 97 == 0:
            lines.append(line)  # re-sent by the edge outbox
        if i == 31 * 12 and late:
            lines.append(late)
    return "\n".join(lines) + "\n"


def landslide() -> str:
    rnd = random.Random(20260714)
    lines = ["# landslide-acceleration: crack meter hp-gy-01 at HP-GY-01, cumulative mm, hourly; failure near day 10",
             "ts,site,sensor,quantity,value,unit,gateway"]
    for i in range(int(9.8 * 24) + 1):
        d = i / 24
        s = 0.5 * d if d < 3 else 1.5 + 10 * math.log((10 - 3) / (10 - d))
        s += rnd.gauss(0, 0.03)  # crack-meter noise
        ts = (T0 + timedelta(hours=i)).isoformat()
        lines.append(f"{ts},HP-GY-01,hp-gy-01,displacement_mm,{100 + s:.2f},mm,gw-xl")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    (HERE / "rainstorm-3days.csv").write_text(rainstorm())
    (HERE / "landslide-acceleration.csv").write_text(landslide())
    print("wrote", HERE / "rainstorm-3days.csv", HERE / "landslide-acceleration.csv")
