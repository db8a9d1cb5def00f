"""Quality flags, pure: a value is ok, out of the sensor's range, or stuck. Flagged, never dropped."""

from __future__ import annotations

import math
from typing import Any

from yujing.model import Quality


class QualityChecker:
    """Remembers recent values per (sensor, quantity) to spot a frozen sensor."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], tuple[float, int]] = {}

    def assess(self, key: tuple[str, str], value: float, checks: Any, reported: Quality = Quality.OK) -> Quality:
        if reported is not Quality.OK:
            return reported
        if not math.isfinite(value):
            return Quality.OUT_OF_RANGE
        if checks is not None:
            lo, hi = getattr(checks, "min", None), getattr(checks, "max", None)
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                return Quality.OUT_OF_RANGE
            stuck_after = getattr(checks, "stuck_after", None)
            if stuck_after:
                last, n = self._runs.get(key, (math.nan, 0))
                n = n + 1 if value == last else 1
                self._runs[key] = (value, n)
                if n >= stuck_after:
                    return Quality.STUCK
        return Quality.OK
