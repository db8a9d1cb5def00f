"""What every running part is handed: its configuration, its clock, and the stop signal."""

from __future__ import annotations

import asyncio
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
