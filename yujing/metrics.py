"""Prometheus ``/metrics`` and ``/health`` over aiohttp (no extra thread).

Counters are defined by the module that counts (``collector.metrics``, ...)
on prometheus_client's default registry; this module only serves them. Every part serves both when its
section names a ``metrics_port`` (a gateway's in its ``gateways:`` entry): ``/health`` is a small JSON
document whose ``ok`` says whether the part does its job (connected to the broker, the database
answering, ...), answered 200 when it does and 503 when not, so a load balancer or systemd check needs
no JSON parser. In ``yujing run`` the parts share one process and one registry: each ``/metrics`` shows
them all, each ``/health`` its own part.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import AsyncContextManager, AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


@contextlib.asynccontextmanager
async def serve(host: str, port: int, health: "Health | None" = None,
                render: Callable[[], Awaitable[bytes]] | None = None) -> AsyncIterator[int]:
    """Serve ``/metrics`` and ``/health`` on host:port (0 = any free port); yields the bound port.

    ``health`` may be a coroutine function; ``render`` replaces the default registry's exposition (a process
    that serves what other processes count, e.g. the collector's supervisor, collector/workers.py)."""

    async def metrics(_req: web.Request) -> web.Response:
        body = await render() if render is not None else generate_latest()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_req: web.Request) -> web.Response:
        doc = health() if health else {"ok": True}
        if inspect.isawaitable(doc):
            doc = await doc
        return web.json_response(doc, status=200 if doc.get("ok", True) else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", healthz)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    try:
        yield bound
    finally:
        await runner.cleanup()


Health = Callable[[], "dict[str, object] | Awaitable[dict[str, object]]"]


def serving(host: str, port: int | None, health: Health,
            render: Callable[[], Awaitable[bytes]] | None = None) -> AsyncContextManager[int | None]:
    """:func:`serve` when ``port`` is set, else nothing (yields None)."""
    if port is None:
        return contextlib.nullcontext()
    return serve(host, port, health, render)
