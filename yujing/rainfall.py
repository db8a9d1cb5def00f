"""Rain as a chart shows it, shared by the console's site chart and the drill report's charts.

A tipping counter is read as increments (a rollover or a logger reset reads as a fresh start, never as negative
rain) and per-period values as they are; rolling sums over a window give the accumulations thresholds name.
The rules' own counter handling (rules/rain.py) is stricter: it tells glitches, rollovers and resets apart.
"""

from __future__ import annotations


def increments(points: list[tuple[float, float]], quantity: str) -> list[tuple[float, float]]:
    """Rain per interval, ``(t, mm)``, from ``rain_count_mm`` (a counter) or ``rain_mm`` (per period) points."""
    out: list[tuple[float, float]] = []
    prev = None
    for t, v in points:
        if v != v:  # NaN: a failed poll
            continue
        if quantity == "rain_mm":
            out.append((t, max(0.0, v)))
        elif prev is not None:
            d = v - prev
            out.append((t, d if d >= 0 else 0.0))
        prev = v
    return out


def rolling(incs: list[tuple[float, float]], window_s: float) -> list[tuple[float, float]]:
    """``(t, mm in the window ending at t)`` for each increment."""
    out: list[tuple[float, float]] = []
    lo, acc = 0, 0.0
    for t, mm in incs:
        acc += mm
        while incs[lo][0] <= t - window_s:
            acc -= incs[lo][1]
            lo += 1
        out.append((t, acc))
    return out
