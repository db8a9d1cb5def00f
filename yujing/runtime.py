"""What every running part is handed: its configuration, its clock, and the stop signal."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field

from yujing.clock import Clock
from yujing.config import BaseConfig


@dataclass
class Runtime:
    config: BaseConfig  # a yujing.compose.Config: each part reads its own section
    clock: Clock = field(default_factory=Clock)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    drill: bool = False  # a drill run: every warning and message it makes is drill-marked

    async def sleep(self, scenario_seconds: float) -> bool:
        """Sleep on the clock, waking early on stop. Returns True if stopping."""
        try:  # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel (see edge/uplink.py)
            async with asyncio.timeout(self.clock.real_seconds(scenario_seconds)):
                await self.stop.wait()
        except TimeoutError:
            return False
        return True


def tune_gc() -> None:
    """Fewer young-generation collections, and none of them walking what exists at start-up: for a part whose
    hot path makes short-lived containers by the thousand (readings held until their batch is durable, a
    fan-out's queue items, futures, requests and callbacks).

    At CPython's default (a young collection every 700 new containers) each of them is walked by a young
    collection, promoted, walked again by the next generation's, and the full ones walk the imported code (and
    the alerts' chain of thousands of households) too. Measured: 10-15 % of the collector's CPU on batched
    uplinks (0.4-0.6 s of GC per 200,000 readings, 0.09 s with this); a 5,000-household red ran ~900
    collections, a sixth of the alerts' CPU, and ~26 with this (bench/alerts.py). Process-wide, and harmless to
    whatever shares the process: cyclic garbage waits a little longer to be freed.
    """
    gc.freeze()  # start-up objects: never garbage
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], 10_000), *threshold[1:])
