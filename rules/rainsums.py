"""A rain gauge's rolling sums and their grading: per-minute bins, the 1/3/6/12/24 h windows kept incrementally
(add a bin, subtract what leaves), and grading tables with the rounding of the sums folded into their
thresholds. Pure arithmetic on :class:`GaugeState`; the rain pack (:mod:`rules.rain`) decides what goes in.

Every reading costs the same however many the day holds, and the float operations are fixed: a grade compares
the sums with thresholds, so a change here must keep them bit for bit (``tests/test_rules_service_golden.py``,
``tests/test_rules_rain_grading.py``).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

from rules.lifecycle import max_level
from yujing.model import Level

WINDOWS_H = (1, 3, 6, 12, 24)
_WINDOWS_MIN = tuple((h, h * 60) for h in WINDOWS_H)
KEEP_MIN = 24 * 60 + 1
_SEVERITY = {lv: lv.severity for lv in Level}


@dataclass
class GaugeState:
    site: str = ""
    last_count: float | None = None  # the counter's baseline: its last reading that continued the count
    count_t: float | None = None  # ... and its time
    last_t: float | None = None  # latest reading of the gauge (either quantity)
    bins: dict[int, float] = field(default_factory=dict)  # epoch minute -> mm, the last 24 h
    end: int | None = None  # the minute the window sums end at (the gauge's latest reading)
    sums: dict[int, float] = field(default_factory=dict)  # window hours -> mm, kept incrementally
    period: dict[str, float] = field(default_factory=dict)  # reading ts -> mm, for idempotent re-sends
    gaps: list[list[float]] = field(default_factory=list)  # [start, end] of spread gaps, last 24 h
    events: list[list[Any]] = field(default_factory=list)  # [t, text]: resets, rollovers, rejected jumps
    pending: list[float] = field(default_factory=list)  # [t, value]: a break in the count, until the next reading
    # the hours (epoch minute // 60) whose bins changed since the state was last saved (ALL: every one); not
    # saved itself: the bins are saved an hour a row, only the hours changed (see RainPack.dump)
    touched: set[int] = field(default_factory=set)


ALL = -1  # in GaugeState.touched: every hour changed (the bins were rebuilt)


def _minute(t: float) -> int:
    return math.floor(t / 60.0)  # (an int already)


def add(st: GaugeState, minute: int, mm: float) -> None:
    """Add ``mm`` at ``minute``, moving the windows' end forward first if it is newer."""
    if st.end is None:
        st.end = minute
        st.sums = {h: 0.0 for h in WINDOWS_H}
    if minute > st.end:
        advance(st, minute)
    bins, sums = st.bins, st.sums
    bins[minute] = bins.get(minute, 0.0) + mm
    st.touched.add(minute // 60)
    age = st.end - minute  # 0 for the latest minute: every window holds it
    for h, w in _WINDOWS_MIN:
        if age < w:
            sums[h] += mm


def advance(st: GaugeState, end: int) -> None:
    """Move the windows' end to ``end``: what leaves a window is subtracted, what leaves 24 h is dropped.

    The same float operations as summing the leaving bins and subtracting that sum (the totals must not
    drift from what they were: a grade compares them with thresholds), without a generator per window."""
    old = st.end
    if old is None or end <= old:
        return
    bins, sums = st.bins, st.sums
    step = end - old
    for h, w in _WINDOWS_MIN:
        if step >= w:
            sums[h] = sum(mm for m, mm in bins.items() if end - w < m <= end)
        elif step == 1:  # the usual step, a minute: one bin leaves (x - 0.0 is x: a missing bin changes nothing)
            left = bins.get(old - w + 1)
            if left is not None:
                sums[h] -= left
        else:
            sums[h] -= sum(bins.get(m, 0.0) for m in range(old - w + 1, end - w + 1))
    if step >= KEEP_MIN:
        st.bins = {m: mm for m, mm in bins.items() if m > end - KEEP_MIN}
        st.touched.add(ALL)
    else:
        for m in range(old - KEEP_MIN + 1, end - KEEP_MIN + 1):
            if bins.pop(m, None) is not None:
                st.touched.add(m // 60)
    st.end = end


def totals(st: GaugeState) -> dict[int, float]:
    """Rainfall in each window ending at the gauge's latest minute (that minute included)."""
    return {h: round(max(st.sums.get(h, 0.0), 0.0), 3) for h in WINDOWS_H}


def recount(st: GaugeState) -> None:
    """Sums from the bins (after loading state, whose JSON keys are strings)."""
    st.bins = {int(m): float(mm) for m, mm in st.bins.items()}
    if st.end is None:
        st.sums = {}
        return
    st.sums = {h: sum(mm for m, mm in st.bins.items() if st.end - h * 60 < m <= st.end) for h in WINDOWS_H}


def grade_windows(tot: dict[int, float], table: dict[Level, dict[int, float]], current: Level | None,
                  hysteresis: float) -> tuple[Level | None, list[tuple[Level, int, float, float]]]:
    """The highest level any window reaches, and every (level, hours, total, threshold) met."""
    met = []
    for lv, windows in table.items():
        for hours, mm in windows.items():
            reach = mm - hysteresis if current is not None and lv <= current else mm
            if tot.get(hours, 0.0) >= reach:
                met.append((lv, hours, tot.get(hours, 0.0), mm))
    return max_level(*(m[0] for m in met)), met


def reached_at(reach: float) -> float:
    """The least window sum that reaches ``reach`` once rounded as :func:`totals` rounds it.

    ``round(max(x, 0.0), 3) >= reach`` exactly when ``x >= reached_at(reach)``, as the rounding never decreases:
    so grading compares the raw sums with thresholds moved once, at load, instead of rounding five sums per
    reading (with the comparisons, a third of the rain pack's time). Found by bisection over the floats."""
    if 0.0 >= reach:
        return -math.inf  # even an empty window reaches it
    # a threshold in mm to 3 decimals or fewer (every configured one): the edge is within a few floats of
    # half a unit of the 3rd decimal below it; walk there, and bisect only if it is not
    x = math.nextafter(reach - 0.0005, -math.inf)
    for _ in range(8):
        up = math.nextafter(x, math.inf)
        if x >= 0.0 and round(x, 3) < reach <= round(up, 3):
            return up
        x = up
    lo, hi = _bits(0.0), _bits(reach + 1.0)  # round(lo) < reach <= round(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if round(_float(mid), 3) >= reach:
            hi = mid
        else:
            lo = mid
    return _float(hi)


def _bits(x: float) -> int:  # non-negative floats order as their bit patterns do
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _float(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<q", bits))[0]


class Grader:
    """One grading table (level -> window hours -> mm) with its hysteresis, thresholds moved by :func:`reached_at`:
    :func:`grade_windows`' level straight from a gauge's unrounded sums."""

    def __init__(self, table: dict[Level, dict[int, float]], hysteresis: float) -> None:
        self.table, self.hysteresis = table, hysteresis
        rows = [(lv, lv.severity, [(h, reached_at(mm), reached_at(mm - hysteresis)) for h, mm in windows.items()])
                for lv, windows in table.items()]
        self.rows = sorted(rows, key=lambda row: -row[1])  # the highest level first: the first reached is the one
        self._windows_known = all(h in WINDOWS_H for _, _, windows in rows for h, _, _ in windows)

    def level(self, st: GaugeState, current: Level | None) -> Level | None:
        held = _SEVERITY[current] if current is not None else 0
        sums = st.sums
        if len(sums) != len(WINDOWS_H) or not self._windows_known:  # no rain yet (no sums): every window 0.0
            sums = {h: sums.get(h, 0.0) for h in WINDOWS_H}
        for lv, sev, windows in self.rows:
            eased = sev <= held  # a level in force (or below it) is kept until the sum falls past the hysteresis
            for hours, plain, hyst in windows:
                if sums[hours] >= (hyst if eased else plain):
                    return lv
        return None
