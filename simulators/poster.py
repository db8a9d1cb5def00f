"""A lean HTTP/1.1 client for what a stand-in posts back (status callbacks, inbound SMS, pushes): form POSTs on
kept-alive connections, and the status of each answer.

Twilio posts two status callbacks per SMS (sent, delivered); in a fan-out the stand-in posted them through
aiohttp's client, about half of its CPU (py-spy over ``bench/alerts.py``): a request object, a URL object, a
cookie jar, a timer and a response object each. What the stand-in needs is less: send the bytes Twilio would
send, read the status line and skip the body. ``https`` URLs (a public URL the tests never reach) go through
the aiohttp session the stand-in keeps for them.

A connection idle in the pool may have been closed by the server meanwhile (its keep-alive ran out): a request
whose connection was reused and that got no byte of an answer is sent once more on a new connection, as
browsers do; the server closed it before reading the request, so it is not posted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

IDLE_S = 30.0  # reuse a connection idle at most this long (aiohttp's server keeps one 75 s, others less)


class PostError(Exception):
    """The server could not be reached, or its answer was not HTTP/1.x."""


class _Conn:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.idle_since = reader, writer, 0.0

    def close(self) -> None:
        self.writer.close()


class Poster:
    """``await poster.post(url, body, headers) -> status``; ``await poster.close()``. Connections per host are
    opened as needed (as many as requests are in flight, at most ``per_host``) and kept for the next requests."""

    def __init__(self, timeout_s: float = 10.0, per_host: int = 100) -> None:
        self.timeout_s = timeout_s
        self.per_host = per_host  # requests in flight to one host (aiohttp's default limit): the rest wait
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._closed = False
        self.opened = 0  # connections opened (tests: they are kept and reused)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST ``body`` to ``url`` (http, already percent-encoded: sent as given); the answer's status."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise PostError(f"not an http URL: {url}")
        host, port = parts.hostname, parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
                   .encode("latin-1") + body)
        slots = self._slots.get((host, port)) or self._slots.setdefault((host, port), asyncio.Semaphore(self.per_host))
        async with slots, asyncio.timeout(self.timeout_s):  # a fan-out's thousands of callbacks: 100 sockets
            conn, reused = await self._conn(host, port)
            try:
                status, keep = await self._exchange(conn, request)
            except _NoAnswer:
                conn.close()
                if not reused:
                    raise PostError(f"{url}: the server closed the connection without an answer") from None
                conn, _ = await self._open(host, port)  # the server had closed an idle one: once more, fresh
                try:
                    status, keep = await self._exchange(conn, request)
                except _NoAnswer:
                    conn.close()
                    raise PostError(f"{url}: the server closed the connection without an answer") from None
                except BaseException:
                    conn.close()
                    raise
            except BaseException:
                conn.close()
                raise
        if keep and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault((host, port), []).append(conn)
        else:
            conn.close()
        return status

    async def _conn(self, host: str, port: int) -> tuple[_Conn, bool]:
        idle = self._idle.get((host, port))
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < IDLE_S and not conn.writer.is_closing() and not conn.reader.at_eof():
                return conn, True
            conn.close()
        return await self._open(host, port)

    async def _open(self, host: str, port: int) -> tuple[_Conn, bool]:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            raise PostError(f"cannot connect to {host}:{port}: {exc}") from exc
        self.opened += 1
        return _Conn(reader, writer), False

    async def _exchange(self, conn: _Conn, request: bytes) -> tuple[int, bool]:
        """Send, read the answer (status, headers, body by length or chunks); (status, keep the connection)."""
        try:
            conn.writer.write(request)
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                raise PostError("the answer ended inside its headers") from exc
            raise _NoAnswer from exc
        except asyncio.LimitOverrunError as exc:
            raise PostError("the answer's headers are too long") from exc
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise PostError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        status = int(rest[:3])
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip().lower()
        try:
            if "chunked" in fields.get("transfer-encoding", ""):
                await self._skip_chunks(conn.reader)
            elif "content-length" in fields:
                await conn.reader.readexactly(int(fields["content-length"]))
            elif status not in (204, 304) and not 100 <= status < 200:
                await conn.reader.read()  # the body runs to the end of the connection
                return status, False
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            raise PostError(f"the answer's body was cut short ({exc!r})") from exc
        keep = fields.get("connection") != "close" and version == "HTTP/1.1"
        return status, keep

    @staticmethod
    async def _skip_chunks(reader: asyncio.StreamReader) -> None:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the blank line
                    pass
                return
            await reader.readexactly(size + 2)

    async def close(self) -> None:
        self._closed = True
        conns = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()


class _NoAnswer(Exception):
    """The connection ended before any byte of an answer."""
