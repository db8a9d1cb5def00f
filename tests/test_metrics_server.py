"""yujing/metrics.py's small server: what it answers beside /metrics and /health (those are in
test_observability.py, every part run as the command runs it), and that a client that never sends its request
holds up nobody."""

from __future__ import annotations

import asyncio

from yujing import metrics


async def fetch(port: int, request: bytes) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 5)  # the server closes after its answer
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


async def test_health_head_unknown_paths_other_methods_and_a_failing_check_each_get_their_status():
    state = {"ok": False, "fail": False}

    async def health() -> dict[str, object]:
        if state["fail"]:
            raise RuntimeError("the check itself broke")
        return {"ok": state["ok"], "db_up": True}

    async with metrics.serve("127.0.0.1", 0, health) as port:
        head, body = await fetch(port, b"GET /health?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ") and body == b'{"ok": false, "db_up": true}'
        assert b"Content-Type: application/json" in head and b"Content-Length: 28" in head
        state["ok"] = True
        head, body = await fetch(port, b"HEAD /health HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 27" in head and body == b""
        head, body = await fetch(port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and metrics.CONTENT_TYPE_LATEST.encode() in head and b"# TYPE" in body
        assert (await fetch(port, b"GET /admin HTTP/1.1\r\n\r\n"))[0].startswith(b"HTTP/1.1 404 ")
        assert (await fetch(port, b"POST /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n"))[0].startswith(b"HTTP/1.1 405 ")
        state["fail"] = True
        assert (await fetch(port, b"GET /health HTTP/1.1\r\n\r\n"))[0].startswith(b"HTTP/1.1 500 ")


async def test_a_client_that_sends_nothing_does_not_hold_up_the_next_one():
    async with metrics.serve("127.0.0.1", 0) as port:
        _reader, silent = await asyncio.open_connection("127.0.0.1", port)
        silent.write(b"GET /hea")  # and nothing more
        head, body = await fetch(port, b"GET /health HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and body == b'{"ok": true}'
        silent.close()


async def test_the_server_stops_at_once_though_a_client_holds_a_connection():
    loop = asyncio.get_running_loop()
    async with metrics.serve("127.0.0.1", 0) as port:
        reader, silent = await asyncio.open_connection("127.0.0.1", port)
        silent.write(b"GET /hea")
        await asyncio.sleep(0.05)  # the server has taken the connection
        t0 = loop.time()
    assert loop.time() - t0 < 1.0
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the server, unanswered
    silent.close()
