"""Value sources: what a simulated sensor measures at scenario time ``now``.

Drills script devices with these: a constant, a ramp, a piecewise-linear
series, a hand-set value, and a tipping-bucket counter driven by a rain rate.
"""

from __future__ import annotations

import bisect
from datetime import datetime
from typing import Protocol, Sequence, runtime_checkable


@runtime_checkable
class ValueSource(Protocol):
    def value(self, now: datetime) -> float: ...


class Constant:
    def __init__(self, v: float) -> None:
        self.v = float(v)

    def value(self, now: datetime) -> float:
        return self.v


class Manual:
    """A value a test or drill sets by hand: ``src.set(12.5)``."""

    def __init__(self, v: float = 0.0) -> None:
        self.v = float(v)

    def set(self, v: float) -> None:
        self.v = float(v)

    def value(self, now: datetime) -> float:
        return self.v


class Ramp:
    """``start + rate_per_s × (now - t0)``; ``t0`` defaults to the first time it is asked."""

    def __init__(self, start: float, rate_per_s: float, t0: datetime | None = None) -> None:
        self.start, self.rate_per_s, self.t0 = float(start), float(rate_per_s), t0

    def value(self, now: datetime) -> float:
        if self.t0 is None:
            self.t0 = now
        return self.start + self.rate_per_s * (now - self.t0).total_seconds()


class PiecewiseLinear:
    """Linear between ``(seconds after t0, value)`` points; flat before the first and after the last."""

    def __init__(self, points: Sequence[tuple[float, float]], t0: datetime | None = None) -> None:
        if not points:
            raise ValueError("a piecewise-linear series needs at least one point")
        pts = sorted((float(t), float(v)) for t, v in points)
        self.ts = [t for t, _ in pts]
        self.vs = [v for _, v in pts]
        self.t0 = t0

    def value(self, now: datetime) -> float:
        if self.t0 is None:
            self.t0 = now
        t = (now - self.t0).total_seconds()
        i = bisect.bisect_right(self.ts, t)
        if i == 0:
            return self.vs[0]
        if i == len(self.ts):
            return self.vs[-1]
        t1, t2, v1, v2 = self.ts[i - 1], self.ts[i], self.vs[i - 1], self.vs[i]
        return v1 + (v2 - v1) * (t - t1) / (t2 - t1)


class TippingCounter:
    """A tipping-bucket rain gauge: integrates a rain rate (mm/h) into whole tips.

    ``value`` is the counter × ``mm_per_tip`` (what a register with ``scale:
    mm_per_tip`` reads back), wrapping at ``rollover`` tips like a 16-bit
    register; :meth:`reset` zeroes the counter like a power-cycled logger.
    """

    def __init__(self, rate_mm_h: ValueSource, mm_per_tip: float = 0.5, rollover: int = 65536,
                 start_tips: int = 0) -> None:
        self.rate = rate_mm_h
        self.mm_per_tip = mm_per_tip
        self.rollover = rollover
        self.mm = start_tips * mm_per_tip  # rain fallen since reset, unrounded
        self._last: datetime | None = None

    def tips(self, now: datetime) -> int:
        if self._last is not None and now > self._last:
            dt_h = (now - self._last).total_seconds() / 3600.0
            self.mm += max(0.0, self.rate.value(now)) * dt_h
        if self._last is None or now > self._last:
            self._last = now
        return int(self.mm / self.mm_per_tip + 1e-9) % self.rollover

    def value(self, now: datetime) -> float:
        return self.tips(now) * self.mm_per_tip

    def reset(self) -> None:
        self.mm = 0.0
