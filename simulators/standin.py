"""What the provider stand-ins (Twilio, Alibaba Cloud) share: an aiohttp server, a session for what the far end
posts back, the far end's tasks, and waiting for what a test expects.

A subclass adds its routes in :meth:`StandIn.routes` and says what it is in :attr:`StandIn.title`; ``async with``
starts it on ``host:port`` (port 0: any free one, read back into :attr:`port`) and stops it, cancelling the far
end's tasks first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Self

import aiohttp
from aiohttp import web

from yujing.http import Client as Poster


class StandIn:
    title = "stand-in"
    host: str
    port: int
    clock: Any  # anything with async sleep(scenario_seconds) and timestamp(); None: real time
    log: logging.Logger

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._waiting = 0  # coroutines in wait_until: a change wakes them, and costs nothing when there are none
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._poster = Poster(timeout_s=10, user_agent="TwilioProxy/1.1")  # what the far end posts back to http URLs (yujing/http.py)

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def listening(self) -> str:
        """What the start-up log line says where it listens."""
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self.log.info("%s已启动 (stand-in listening)", self.title, extra={"kv": {"url": self.listening()}})
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        if self._session is not None:
            await self._session.close()
        await self._poster.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_until(self, predicate: Callable[[], Any], timeout_s: float = 10.0, what: str = "") -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every change at the stand-in); return its value."""
        self._waiting += 1
        try:
            async with self._changed:
                return await asyncio.wait_for(self._changed.wait_for(predicate), timeout_s)
        except TimeoutError:
            raise AssertionError(f"{self.title}: timed out after {timeout_s} s waiting for "
                                 f"{what or predicate}") from None
        finally:
            self._waiting -= 1

    async def _notify(self) -> None:
        """Something changed: wake whoever waits (a fan-out makes thousands of changes a second, mostly unwatched)."""
        if self._waiting:
            async with self._changed:
                self._changed.notify_all()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _now_s(self) -> float:
        return self.clock.timestamp() if self.clock is not None else time.time()

    async def _sleep(self, scenario_s: float) -> None:
        await (self.clock.sleep(scenario_s) if self.clock is not None else asyncio.sleep(scenario_s))
