"""A small HTTP/1.1 client for the InfluxDB 1.x store: POSTs on kept-alive connections, answers read whole.

aiohttp was the collector's only user of an HTTP client library, and its import (with multidict, yarl,
attrs, the email and cookie modules it pulls in) was ~11 MiB of a collector process's ~60 MiB at start,
of the 80 MiB issue 18 allows it at its peak. The store needs less: ``POST`` a body with a few headers to
one server, over TLS or not, as many at once as ``writes_in_flight``, and read the status and the body
(by length, chunked, or to the close). Connections are opened as needed and kept for the next request.

A connection idle in the pool may have been closed by the server meanwhile (its keep-alive ran out): a
request sent on a reused connection that got no byte of an answer is sent once more on a new one. For
``/write`` that is safe even had the server read it: a point written twice is stored once.
"""

from __future__ import annotations

import asyncio
import base64
import time
from urllib.parse import urlencode, urlsplit

IDLE_S = 30.0  # reuse a connection idle at most this long (InfluxDB keeps them open; proxies may not)
_MAX_HEAD = 65_536


class HttpError(Exception):
    """The server could not be reached, did not answer in time, or its answer was not HTTP/1.x."""


class _NoAnswer(Exception):
    """The connection closed before the first byte of an answer."""


class _Conn:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.idle_since = reader, writer, 0.0

    def close(self) -> None:
        self.writer.close()


class Client:
    """``await client.post(path, body, params=..., content_type=...) -> (status, text)``; ``await client.close()``.

    ``base_url`` is ``http://host:port`` or ``https://host:port`` (a path prefix is kept: a proxy's
    ``https://host/influx``); ``username``/``password`` are sent as HTTP Basic auth on every request."""

    def __init__(self, base_url: str, timeout_s: float, username: str | None = None, password: str = "") -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host, self.tls = parts.hostname, parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        head = f"Host: {parts.netloc}\r\nUser-Agent: yujing-collector\r\n"
        if username:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            head += f"Authorization: Basic {token}\r\n"
        self._head = head
        self._idle: list[_Conn] = []
        self._closed = False

    async def post(self, path: str, body: bytes, params: dict[str, str] | None = None,
                   content_type: str = "text/plain; charset=utf-8") -> tuple[int, str]:
        """POST ``body`` to ``path`` (with ``params`` as its query); the answer's status and body text."""
        target = self.prefix + path + (f"?{urlencode(params)}" if params else "")
        request = (f"POST {target} HTTP/1.1\r\n{self._head}Content-Type: {content_type}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
        try:
            async with asyncio.timeout(self.timeout_s):
                conn, reused = await self._conn()
                try:
                    try:
                        status, text, keep = await self._exchange(conn, request)
                    except _NoAnswer:
                        conn.close()
                        if not reused:
                            raise HttpError("the server closed the connection without an answer") from None
                        conn, _ = await self._open()  # it had closed an idle one: once more, on a new one
                        status, text, keep = await self._exchange(conn, request)
                except BaseException:
                    conn.close()
                    raise
        except _NoAnswer:
            raise HttpError("the server closed the connection without an answer") from None
        except TimeoutError:
            raise HttpError(f"no answer within {self.timeout_s} s") from None
        except OSError as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from None
        if keep and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return status, text

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            try:
                await conn.writer.wait_closed()
            except OSError:
                pass

    async def _conn(self) -> tuple[_Conn, bool]:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < IDLE_S and not conn.writer.is_closing() and not conn.reader.at_eof():
                return conn, True
            conn.close()
        return await self._open()

    async def _open(self) -> tuple[_Conn, bool]:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, ssl=True if self.tls else None,
                                                           limit=_MAX_HEAD)
        except OSError as exc:
            raise HttpError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return _Conn(reader, writer), False

    async def _exchange(self, conn: _Conn, request: bytes) -> tuple[int, str, bool]:
        """Send; read the answer: (status, body text, whether the connection may be used again)."""
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
                fields[name.strip().lower()] = value.strip()
        keep = version != "HTTP/1.0" and fields.get("connection", "").lower() != "close"
        try:
            if status in (204, 304) or 100 <= status < 200:
                body = b""
            elif "chunked" in fields.get("transfer-encoding", "").lower():
                body = await self._chunks(conn.reader)
            elif "content-length" in fields:
                body = await conn.reader.readexactly(int(fields["content-length"]))
            else:  # no length: the body runs to the close
                body, keep = await conn.reader.read(), False
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            raise HttpError(f"the answer's body was cut short or malformed: {exc}") from exc
        return status, body.decode("utf-8", "replace"), keep

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
