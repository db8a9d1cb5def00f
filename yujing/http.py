"""One small HTTP/1.1 client: POSTs on kept-alive connections, per host at most ``per_host`` at once.

Two users, each with a measured reason not to import aiohttp's client:

- the collector's InfluxDB 1.x store (collector/stores/influx_v1.py): aiohttp, with multidict, yarl, attrs and
  the email and cookie modules it pulls in, was ~11 MiB of a collector process issue 18 allows 80 MiB at its
  peak, and its only other use there was the metrics server (yujing/metrics.py, on asyncio's streams too);
- the provider stand-ins' callbacks (simulators/twilio_far_end.py): Twilio posts two status callbacks per SMS,
  and aiohttp's request, URL, cookie-jar, timer and response objects were half the stand-in's CPU in a fan-out.

What both need is less than a general client: ``POST`` a body with a few headers (over TLS or not), read the
status and the body (by length, chunked, or to the close), keep the connection for the next request. The
standard library's ``http.client`` blocks, so it would need a thread per request in flight.

A connection idle in the pool may have been closed by the server meanwhile (its keep-alive ran out): a request
sent on a reused connection that got no byte of an answer is sent once more on a new one, as browsers do. Its
users can bear that: a point written twice is stored once, and a callback is de-duplicated by its receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

IDLE_S = 30.0  # reuse a connection idle at most this long (InfluxDB and aiohttp's server keep them longer)
_MAX_HEAD = 65_536

Host = tuple[str, int, bool]  # host, port, TLS


class HttpError(Exception):
    """The server could not be reached, did not answer in time, or its answer was not HTTP/1.x."""


class _NoAnswer(Exception):
    """The connection ended before the first byte of an answer."""


class _Conn:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.idle_since = reader, writer, 0.0

    def close(self) -> None:
        self.writer.close()


class Client:
    """``await client.post(url, body, headers) -> (status, body)``; ``await client.close()``.

    Connections per host are opened as needed (as many as requests are in flight, at most ``per_host``: the
    rest wait for one) and kept for the next requests. ``url`` is sent as given (already percent-encoded).
    """

    def __init__(self, timeout_s: float = 10.0, per_host: int = 100, user_agent: str = "yujing") -> None:
        self.timeout_s = timeout_s
        self.per_host = per_host
        self._agent = user_agent
        self._idle: dict[Host, list[_Conn]] = {}
        self._slots: dict[Host, asyncio.Semaphore] = {}
        self._closed = False
        self.opened = 0  # connections opened (tests: they are kept and reused)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """POST ``body`` to ``url`` (http or https); the answer's status and body."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        host: Host = (parts.hostname, parts.port or (443 if tls else 80), tls)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        request = (f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: {self._agent}\r\n{head}"
                   f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
        slots = self._slots.get(host) or self._slots.setdefault(host, asyncio.Semaphore(self.per_host))
        try:
            async with slots, asyncio.timeout(self.timeout_s):
                conn, reused = await self._conn(host)
                try:
                    try:
                        status, answer, keep = await self._exchange(conn, request)
                    except _NoAnswer:
                        conn.close()
                        if not reused:
                            raise
                        conn, _ = await self._open(host)  # it had closed an idle one: once more, on a new one
                        status, answer, keep = await self._exchange(conn, request)
                except BaseException:
                    conn.close()
                    raise
        except _NoAnswer:
            raise HttpError(f"{parts.netloc}: the server closed the connection without an answer") from None
        except TimeoutError:
            raise HttpError(f"{parts.netloc}: no answer within {self.timeout_s} s") from None
        except OSError as exc:
            raise HttpError(f"{parts.netloc}: {type(exc).__name__}: {exc}") from None
        if keep and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(host, []).append(conn)
        else:
            conn.close()
        return status, answer

    async def close(self) -> None:
        self._closed = True
        conns = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()

    async def _conn(self, host: Host) -> tuple[_Conn, bool]:
        idle = self._idle.get(host)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < IDLE_S and not conn.writer.is_closing() and not conn.reader.at_eof():
                return conn, True
            conn.close()
        return await self._open(host)

    async def _open(self, host: Host) -> tuple[_Conn, bool]:
        name, port, tls = host
        try:
            reader, writer = await asyncio.open_connection(name, port, ssl=True if tls else None, limit=_MAX_HEAD)
        except OSError as exc:
            raise HttpError(f"cannot connect to {name}:{port}: {exc}") from exc
        self.opened += 1
        return _Conn(reader, writer), False

    async def _exchange(self, conn: _Conn, request: bytes) -> tuple[int, bytes, bool]:
        """Send; read the answer: (status, body, whether the connection may be used again)."""
        try:
            conn.writer.write(request)
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                raise HttpError("the answer ended inside its headers") from exc
            raise _NoAnswer from exc
        except asyncio.LimitOverrunError as exc:
            raise HttpError("the answer's headers are too long") from exc
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise HttpError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        status = int(rest[:3])
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip().lower()
        keep = version != "HTTP/1.0" and fields.get("connection", "") != "close"
        try:
            if status in (204, 304) or 100 <= status < 200:
                body = b""
            elif "chunked" in fields.get("transfer-encoding", ""):
                body = await self._chunks(conn.reader)
            elif "content-length" in fields:
                body = await conn.reader.readexactly(int(fields["content-length"]))
            else:  # no length: the body runs to the close
                body, keep = await conn.reader.read(), False
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            raise HttpError(f"the answer's body was cut short or malformed: {exc}") from exc
        return status, body, keep

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the blank line
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
