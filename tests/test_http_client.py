"""yujing/http.py, the HTTP/1.1 client of the InfluxDB store and the stand-ins, against a plain asyncio server that
answers as HTTP servers do: by length, in chunks, to the close; keeping connections, dropping idle ones,
or not answering at all. The real InfluxDB paths are in test_collector_service.py and the fault tests."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable

import pytest

import yujing.config  # noqa: F401  first: collector.config is imported through it
from collector.config import InfluxV1Store
from yujing.http import Client, HttpError
from collector.stores.influx_v1 import InfluxV1
from yujing.config.secrets import Secret
from yujing.errors import StoreError

Answer = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """Reads whole requests (head + Content-Length body); ``answer`` writes the reply, True to keep the link."""

    def __init__(self, answer: Answer) -> None:
        self.answer, self.requests, self.connections = answer, [], 0

    async def __aenter__(self) -> "Server":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.answer(request, reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def reply(raw: bytes, keep: bool = True) -> Answer:
    async def answer(_req: bytes, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(raw)
        await w.drain()
        return keep
    return answer


async def test_answers_by_length_in_chunks_and_to_the_close_are_read_whole():
    cases = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nT: 1\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\n\r\nhello", False),
    ]
    for raw, keep in cases:
        async with Server(reply(raw, keep)) as srv:
            client = Client(timeout_s=5)
            assert await client.post(srv.url + "/query", b"q=1") == (200, b"hello")
            assert await client.post(srv.url + "/query", b"q=2") == (200, b"hello")
            await client.close()
        assert srv.connections == (1 if keep else 2), raw  # kept when the answer allows it, not otherwise


async def test_writes_in_flight_each_get_a_connection_and_the_next_ones_reuse_them():
    async def slow(_req, _r, w):
        await asyncio.sleep(0.05)  # the server's work: the posts overlap
        w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        return True

    async with Server(slow) as srv:
        client = Client(timeout_s=5)
        for _ in range(2):
            got = await asyncio.gather(*(client.post(srv.url + "/write", b"m v=1") for _ in range(3)))
            assert got == [(204, b"")] * 3
        await client.close()
    assert srv.connections == 3 and len(srv.requests) == 6


async def test_a_request_on_a_kept_connection_the_server_dropped_meanwhile_is_sent_once_more_on_a_new_one():
    served: dict[int, int] = {}

    async def drops_its_idle_link(_req, _r, w):
        n = served[id(w)] = served.get(id(w), 0) + 1
        if n == 2:
            return False  # its keep-alive ran out as the request came: closed, nothing answered
        w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await w.drain()
        return True

    async with Server(drops_its_idle_link) as srv:
        client = Client(timeout_s=5)
        assert await client.post(srv.url + "/write", b"m v=1") == (204, b"")
        assert await client.post(srv.url + "/write", b"m v=2") == (204, b"")
        await client.close()
    assert [r[-5:] for r in srv.requests] == [b"m v=1", b"m v=2", b"m v=2"] and srv.connections == 2


async def test_a_server_that_never_answers_is_a_store_error_within_the_timeout():
    async def mute(_req, r, _w):
        await r.read()  # holds the connection, answers nothing
        return False

    async with Server(mute) as srv:
        cfg = InfluxV1Store(type="influxdb_v1", url=srv.url, database="d", timeout_s=0.3)
        async with InfluxV1(cfg) as store:
            t0 = time.monotonic()
            with pytest.raises(StoreError, match="no answer within 0.3 s"):
                await store.write([{"id": "a"}])  # type: ignore[list-item]  (never reaches line building)
            assert time.monotonic() - t0 < 2


async def test_the_store_sends_basic_auth_and_its_query_as_a_form(monkeypatch):
    monkeypatch.setenv("TEST_INFLUX_PASSWORD", "s3:cret")
    async with Server(reply(b'HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{"results":[]}')) as srv:
        cfg = InfluxV1Store(type="influxdb_v1", url=srv.url + "/influx/", database="d b", username="yu",
                            password=Secret(env="TEST_INFLUX_PASSWORD"))
        async with InfluxV1(cfg) as store:
            assert await store.readings(quantity="rain_mm") == []
    head, _, body = srv.requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /influx/query?db=d+b&epoch=ns HTTP/1.1\r\n")
    assert b"Authorization: Basic " + base64.b64encode(b"yu:s3:cret") in head
    assert b"Content-Type: application/x-www-form-urlencoded" in head
    assert body == b"q=SELECT+%2A+FROM+%22rain_mm%22"


async def test_no_server_or_no_http_is_an_error_not_a_hang():
    async with Server(reply(b"SSH-2.0-OpenSSH\r\n\r\n")) as srv:
        client = Client(timeout_s=5)
        with pytest.raises(HttpError, match="not an HTTP/1.x answer"):
            await client.post(srv.url + "/write", b"x")
        await client.close()
    client = Client(timeout_s=5)  # closed now: nobody listens
    with pytest.raises(HttpError, match="cannot connect"):
        await client.post(srv.url + "/write", b"x")
    with pytest.raises(HttpError, match="not an http"):
        await client.post("ftp://example.org/write", b"x")
