"""Time for every part of Yujing, real or accelerated.

Drills replay hours of weather in minutes: at ``speed`` N one real second is N
scenario seconds. Every timer in the daemon (poll intervals, rule windows,
escalation deadlines) goes through a :class:`Clock`, so a drill at speed 600
runs the very same code as a real flood, only faster.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone


class Clock:
    """Scenario time = ``start`` + (monotonic elapsed) * ``speed``."""

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.speed = float(speed)
        self._start = (start or datetime.now(timezone.utc)).astimezone(timezone.utc)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def timestamp(self) -> float:
        return self.now().timestamp()

    def real_seconds(self, scenario_seconds: float) -> float:
        return scenario_seconds / self.speed

    async def sleep(self, scenario_seconds: float) -> None:
        await asyncio.sleep(max(0.0, scenario_seconds) / self.speed)

    async def sleep_until(self, when: datetime) -> None:
        await self.sleep((when - self.now()).total_seconds())


REALTIME = Clock()
