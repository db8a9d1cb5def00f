"""What the stand-ins post back goes through yujing/http.py: form POSTs on kept-alive connections. Against
real servers: each request arrives once, with its bytes and headers; connections are reused; a connection the
server closed while idle is replaced without posting twice; chunked and close-delimited answers are read; an
unreachable server is an error, not a hang."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from yujing.http import Client as Poster, HttpError as PostError
from simulators.ports import free_port


@contextlib.asynccontextmanager
async def server(handler, **kw) -> AsyncIterator[tuple[str, list]]:
    """An aiohttp server recording (peer port, path with query, form, signature) per request."""
    seen: list = []

    async def record(request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        seen.append((request.transport.get_extra_info("peername")[1], request.path_qs, form,
                     request.headers.get("X-Twilio-Signature")))
        return await handler(request)

    app = web.Application()
    app.router.add_post("/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None, **kw)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def no_content(request: web.Request) -> web.Response:
    return web.Response(status=204)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_each_post_arrives_once_with_its_form_and_signature_and_the_connection_is_kept():
    poster = Poster()
    try:
        async with server(no_content) as (url, seen):
            for i in range(5):
                status, _ = await poster.post(f"{url}/twilio/status?n=ab{i}&k=real",
                                           f"MessageSid=SM{i}&MessageStatus=sent&Body=%E4%BD%A0".encode(),
                                           {**FORM, "X-Twilio-Signature": f"sig{i}"})
                assert status == 204
            assert [(path, form, sig) for _, path, form, sig in seen] == [
                (f"/twilio/status?n=ab{i}&k=real", {"MessageSid": f"SM{i}", "MessageStatus": "sent", "Body": "你"},
                 f"sig{i}") for i in range(5)]
            assert len({peer for peer, *_ in seen}) == 1  # one kept-alive connection for the five
    finally:
        await poster.close()


async def test_concurrent_posts_each_get_their_own_answer_on_at_most_per_host_connections():
    async def echo_status(request: web.Request) -> web.Response:
        form = await request.post()
        await asyncio.sleep(0.01)
        return web.Response(status=int(form["want"]), text="x" * 3000)

    poster = Poster(per_host=8)
    try:
        async with server(echo_status) as (url, seen):
            wants = [200, 201, 403, 404, 500] * 8
            got = [status for status, _ in await asyncio.gather(*(poster.post(f"{url}/p", f"want={w}".encode(), FORM)
                                                                 for w in wants))]
            assert got == wants and len(seen) == len(wants)
            assert poster.opened <= 8  # 40 at once, at most 8 connections: the rest waited for one
    finally:
        await poster.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced_and_the_post_arrives_once():
    poster = Poster()
    try:
        async with server(no_content, keepalive_timeout=0.2) as (url, seen):
            assert (await poster.post(f"{url}/a", b"x=1", FORM))[0] == 204
            await asyncio.sleep(0.6)  # the server drops the idle connection; the poster still holds it
            assert (await poster.post(f"{url}/b", b"x=2", FORM))[0] == 204
            assert [path for _, path, *_ in seen] == ["/a", "/b"]
            assert seen[0][0] != seen[1][0]  # a new connection
    finally:
        await poster.close()


async def test_chunked_and_close_delimited_answers_are_read():
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"<Response>", b"<Say>ok</Say>", b"</Response>"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    poster = Poster()
    try:
        async with server(chunked) as (url, seen):
            assert [await poster.post(f"{url}/c", b"x=1", FORM) for _ in range(3)] == [
                (200, b"<Response><Say>ok</Say></Response>")] * 3
            assert len({peer for peer, *_ in seen}) == 1  # each chunked body read to its end: connection reused
    finally:
        await poster.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nno length: the body ends with the connection")
        await writer.drain()
        writer.close()

    raw = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = raw.sockets[0].getsockname()[1]
    poster = Poster()
    try:
        assert (await poster.post(f"http://127.0.0.1:{port}/x", b"", FORM))[0] == 200
        assert (await poster.post(f"http://127.0.0.1:{port}/x", b"", FORM))[0] == 200
    finally:
        await poster.close()
        raw.close()


async def test_an_unreachable_or_silent_server_is_an_error_in_bounded_time():
    poster = Poster(timeout_s=1.0)
    try:
        with pytest.raises(PostError):
            await poster.post(f"http://127.0.0.1:{free_port()}/x", b"", FORM)

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)

        raw = await asyncio.start_server(silent, "127.0.0.1", 0)
        try:
            with pytest.raises(PostError, match="no answer within 1.0 s"):
                await poster.post(f"http://127.0.0.1:{raw.sockets[0].getsockname()[1]}/x", b"", FORM)
        finally:
            raw.close()
        with pytest.raises(PostError, match="not an http"):
            await poster.post("ftp://yujing.example.cn/twilio/status", b"", FORM)
    finally:
        await poster.close()


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))
