"""Waiting for an event that has no hook to await: poll, and fail naming what never happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_for(cond: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0, what: str = "condition",
                   interval_s: float = 0.02) -> None:
    """Poll ``cond`` until true; fail with ``what`` after ``timeout_s``. For events with no hook to await."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = cond()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval_s)
