"""Prometheus ``/metrics`` and ``/health`` on a small HTTP/1.1 server of asyncio's streams (no extra thread).

Counters are defined by the module that counts (``collector.metrics``, ...)
on prometheus_client's default registry; this module only serves them. Every part serves both when its
section names a ``metrics_port`` (a gateway's in its ``gateways:`` entry): ``/health`` is a small JSON
document whose ``ok`` says whether the part does its job (connected to the broker, the database
answering, ...), answered 200 when it does and 503 when not, so a load balancer or systemd check needs
no JSON parser. In ``yujing run`` the parts share one process and one registry: each ``/metrics`` shows
them all, each ``/health`` its own part.

Not aiohttp's server: two GET routes answered whole, one request per connection, need none of it, and in a
collector (no other HTTP server, its InfluxDB client yujing/http.py) importing aiohttp was
~11 MiB of a process issue 18 allows 80 MiB at its peak. A scraper that sends ``Connection: keep-alive`` is
told ``Connection: close``, which every HTTP/1.1 client handles.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from typing import AsyncContextManager, AsyncIterator, Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("yujing.metrics")

_REQUEST_S = 10.0  # a client that has not sent its request head by then is dropped
_MAX_HEAD = 16_384
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 503: "Service Unavailable"}


@contextlib.asynccontextmanager
async def serve(host: str, port: int, health: "Health | None" = None,
                render: Callable[[], Awaitable[bytes]] | None = None) -> AsyncIterator[int]:
    """Serve ``/metrics`` and ``/health`` on host:port (0 = any free port); yields the bound port.

    ``health`` may be a coroutine function; ``render`` replaces the default registry's exposition (a process
    that serves what other processes count, e.g. the collector's supervisor, collector/workers.py)."""

    async def answer(path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, await render() if render is not None else generate_latest()
        if path == "/health":
            doc = health() if health else {"ok": True}
            if inspect.isawaitable(doc):
                doc = await doc
            return (200 if doc.get("ok", True) else 503, "application/json; charset=utf-8",  # type: ignore[union-attr]
                    json.dumps(doc).encode())
        return 404, "text/plain; charset=utf-8", b"404: Not Found"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_links.add(writer)
        try:
            try:
                async with asyncio.timeout(_REQUEST_S):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return  # gone, too slow, or no HTTP: nothing to answer
            method, _, rest = head[:head.find(b"\r\n")].decode("latin-1").partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            if not path.startswith("/"):
                status, ctype, body = 400, "text/plain; charset=utf-8", b"400: Bad Request"
            elif method not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain; charset=utf-8", b"405: Method Not Allowed"
            else:
                try:
                    status, ctype, body = await answer(path)
                except Exception:  # a failing health check or render is this request's error, not the server's
                    log.exception("metrics endpoint failed", extra={"kv": {"path": path}})
                    status, ctype, body = 500, "text/plain; charset=utf-8", b"500: Internal Server Error"
            writer.write(f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
                         + (body if method != "HEAD" else b""))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            open_links.discard(writer)
            writer.close()

    open_links: set[asyncio.StreamWriter] = set()
    server = await asyncio.start_server(handle, host, port, limit=_MAX_HEAD)
    bound = server.sockets[0].getsockname()[1] if server.sockets else port
    try:
        yield bound
    finally:
        # stop at once (main's 665f589: a part's stop must not wait on a scraper): close the listener and every
        # open connection (a handler waiting for its request sees the close), then wait for them, 5 s at most
        server.close()
        for writer in list(open_links):
            writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5.0)


Health = Callable[[], "dict[str, object] | Awaitable[dict[str, object]]"]


def serving(host: str, port: int | None, health: Health,
            render: Callable[[], Awaitable[bytes]] | None = None) -> AsyncContextManager[int | None]:
    """:func:`serve` when ``port`` is set, else nothing (yields None)."""
    if port is None:
        return contextlib.nullcontext()
    return serve(host, port, health, render)
