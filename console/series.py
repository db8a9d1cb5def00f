"""A site's chart: its series from the store for the last hours, its thresholds, the warning levels shaded.

Rain is shown as the rules judge it: rolling accumulations over the windows its thresholds name (a tipping
counter read as increments, a reset read as a fresh start), each window against its own amounts. Water
levels are shown as read, against the reservoir's or river's characteristic levels.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rules.config import effective
from yujing.compose import Config, Site
from yujing.model import Level, Reading
from yujing.rainfall import increments, rolling

RAIN = ("rain_count_mm", "rain_mm")


def thin(xs: list[float], ys: list[list[float | None]], limit: int) -> tuple[list[float], list[list[float | None]]]:
    """At most ``limit`` points (every n-th, the last kept): a 72 h chart of a 1-minute gauge stays light."""
    if len(xs) <= limit:
        return xs, ys
    step = -(-len(xs) // limit)
    idx = list(range(0, len(xs), step))
    if idx[-1] != len(xs) - 1:
        idx.append(len(xs) - 1)
    return [xs[i] for i in idx], [[y[i] for i in idx] for y in ys]


def thresholds(cfg: Config, site: Site) -> list[dict[str, Any]]:
    """Horizontal lines: ``{"label", "value", "level", "window_h"?}``."""
    out: list[dict[str, Any]] = []
    own = site.thresholds
    if site.kind.value == "rain":
        table = effective(cfg.rules.rain, own.rain).table()
        for lv in Level:
            for hours, mm in sorted(table[lv].items()):
                out.append({"label": f"{hours}h {mm:g} mm", "value": mm, "level": lv.value, "window_h": hours})
    elif site.kind.value == "reservoir":
        r = effective(cfg.rules.reservoir, own.reservoir)
        for name, lv in (("flood_limit_m", Level.BLUE), ("flood_control_high_m", Level.YELLOW),
                         ("design_flood_m", Level.ORANGE), ("check_flood_m", Level.RED), ("crest_m", None)):
            v = getattr(r, name)
            if v is not None:
                out.append({"label": name, "value": v, "level": lv.value if lv else ""})
    elif site.kind.value == "river":
        r = effective(cfg.rules.river, own.river)
        for name, lv in (("warning_m", r.warning_level), ("guarantee_m", r.guarantee_level)):
            v = getattr(r, name)
            if v is not None:
                out.append({"label": name, "value": v, "level": lv.value})
    return out


def chart(cfg: Config, site: Site, readings: list[Reading], *, since: datetime, until: datetime,
          spans: list[tuple[str, str | None, str]], max_points: int) -> dict[str, Any]:
    """What the site page's uPlot draws: one panel per quantity (x in unix seconds)."""
    lines = thresholds(cfg, site)
    by_q: dict[str, list[tuple[float, float]]] = {}
    for r in readings:
        by_q.setdefault(r.quantity, []).append((r.ts.timestamp(), r.value))
    panels = []
    for q, pts in sorted(by_q.items()):
        if q in RAIN:
            incs = increments(pts, q)
            windows = sorted({t["window_h"] for t in lines if "window_h" in t}) or [1, 3, 6, 12]
            xs = [t for t, _ in incs]
            series = [{"label": f"{h}h", "window_h": h} for h in windows]
            ys: list[list[float | None]] = [[round(mm, 2) for _, mm in rolling(incs, h * 3600)] for h in windows]
            unit = "mm"
        else:
            xs = [t for t, _ in pts]
            ys = [[v if v == v else None for _, v in pts]]
            series = [{"label": q}]
            unit = next((r.unit for r in readings if r.quantity == q), "")
        xs, ys = thin(xs, ys, max_points)
        panels.append({"quantity": q, "unit": unit, "x": xs, "series": series, "y": ys,
                       "thresholds": lines if q in RAIN or site.kind.value in ("reservoir", "river") else []})
    shaded = []
    for start, end, lv in spans:
        t0 = datetime.fromisoformat(start).timestamp()
        t1 = datetime.fromisoformat(end).timestamp() if end else until.timestamp()
        if t1 >= since.timestamp():
            shaded.append({"from": max(t0, since.timestamp()), "to": t1, "level": lv})
    return {"site": site.id, "since": since.timestamp(), "until": until.timestamp(), "panels": panels,
            "levels": shaded}


def window(now: datetime, hours: int) -> tuple[datetime, datetime]:
    return now - timedelta(hours=hours), now
