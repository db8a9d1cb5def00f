"""The three routes a CAP document comes in by, around one :class:`~upstream.intake.Intake`:

- ``POST /cap/{source}`` on the duty office's server: ``Authorization: Bearer <token>``, or HMAC
  (``X-Yujing-Timestamp: <unix s>``, ``X-Yujing-Signature: sha256=<hex HMAC-SHA256(key, ts + "." + body)>``,
  5 minutes either side). 200/201 with what came of it; 4xx ``{"error": <reason>, "detail": …}`` if refused.
- a feed (Atom or RSS index of CAP documents) polled with conditional GET (``upstream/feeds.py``), what it
  fetched remembered across restarts (``<data_dir>/upstream-feeds.sqlite``);
- an MQTT topic on the deployment's broker.

The duty office's ``GET /api/v1/cap/deadletter`` (operator) lists what was refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import sqlite3
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import aiomqtt
from aiohttp import web

from duty.api import needs, query_limit
from duty.config import Role
from duty.issuer import Issuer
from duty.publisher import IssuerLink
from upstream.cap import Reason, Refusal
from upstream.config import Source
from upstream.deadletter import DeadLetters
from upstream.intake import Intake, Status
from yujing.log import Limiter
from yujing.mqtt import client as mqtt_client
from yujing.runtime import Runtime

if TYPE_CHECKING:
    from upstream.feeds import FeedMemory

log = logging.getLogger("yujing.upstream")
SKEW_S = 300.0
_limiter = Limiter(60.0)
INTAKE: web.AppKey[Intake] = web.AppKey("upstream-intake", Intake)
LINK: web.AppKey[IssuerLink] = web.AppKey("upstream-link", IssuerLink)
SOURCES: web.AppKey[dict[str, Source]] = web.AppKey("upstream-sources", dict)
_STATUS = {Reason.UNKNOWN_SOURCE: 404, Reason.UNAUTHENTICATED: 401, Reason.OVERSIZED: 413, Reason.UNKNOWN_SENDER: 403,
           Reason.NOT_PERMITTED: 403, Reason.UNKNOWN_REFERENCE: 409}


def _authenticated(source: Source, request: web.Request, body: bytes) -> bool:
    auth = source.auth
    if auth is None:
        return False
    try:
        if auth.bearer is not None:
            given = request.headers.get("Authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {auth.bearer.get()}".encode())
        assert auth.hmac is not None
        ts = request.headers.get("X-Yujing-Timestamp", "")
        if not ts.isdigit() or abs(time.time() - int(ts)) > SKEW_S:
            return False
        mac = hmac.new(auth.hmac.get().encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(request.headers.get("X-Yujing-Signature", ""), f"sha256={mac}")
    except LookupError as exc:
        if _limiter.allow(("secret", source.id)):
            log.error("CAP source secret missing: refusing its documents", extra={"kv": {"source": source.id,
                                                                                        "reason": str(exc)}})
        return False


async def post(request: web.Request) -> web.Response:
    intake, sources = request.app[INTAKE], request.app[SOURCES]
    name = request.match_info["source"]
    source = sources.get(name)
    limit = intake.config.upstream.max_bytes
    body = await request.content.read(limit + 1)  # never more than one byte past the limit in memory
    try:
        if source is None:  # a platform with the wrong address, or someone probing: counted and kept like any
            raise Refusal(Reason.UNKNOWN_SOURCE, f"no source {name[:64]!r}")
        if not _authenticated(source, request, body):
            raise Refusal(Reason.UNAUTHENTICATED, "bad or missing bearer token or HMAC signature")
        outcome = intake.receive(body, source, "post")
    except Refusal as r:
        if r.reason in (Reason.UNKNOWN_SOURCE, Reason.UNAUTHENTICATED):  # not through receive(): counted here
            # an unknown source is counted under "?": the name is the sender's to choose, the label set is not
            intake.refuse(source.id if source else "?", "post", r, body)
        return web.json_response({"error": r.reason.value, "detail": r.detail}, status=_STATUS.get(r.reason, 422))
    request.app[LINK].poke()
    return web.json_response({"status": outcome.status.value, "warnings": [w.key for w in outcome.warnings],
                              "note": outcome.note}, status=201 if outcome.status is Status.ISSUED else 200)


@needs(Role.OPERATOR)
async def deadletters(request: web.Request) -> web.Response:
    intake = request.app[INTAKE]
    return web.json_response({"refused": intake.deadletters.entries(query_limit(request))})


def install(app: web.Application, rt: Runtime, issuer: Issuer, link: IssuerLink) -> list[Coroutine[Any, Any, None]]:
    """Add the intake's routes to the duty office's application; returns the pollers to run beside it."""
    cfg = rt.config.upstream
    dead = DeadLetters(rt.config.path(cfg.deadletter, "upstream-deadletter.sqlite"),
                       max_rows=cfg.deadletter_max_rows, max_bytes=cfg.deadletter_max_bytes)
    intake = Intake(rt.config, issuer, dead, rt.clock.now)
    app[INTAKE], app[LINK] = intake, link
    app[SOURCES] = {s.id: s for s in cfg.sources}
    app.router.add_post("/cap/{source}", post)
    app.router.add_get("/api/v1/cap/deadletter", deadletters)
    app.on_cleanup.append(lambda _app: _close(dead))
    tasks: list[Coroutine[Any, Any, None]] = []
    from upstream.feeds import FeedMemory, poll

    feeds = [s for s in cfg.sources if s.feed is not None]
    if feeds:
        memory = FeedMemory(rt.config.path(cfg.feeds, "upstream-feeds.sqlite"))
        app.on_cleanup.append(lambda _app: _close(memory))
        tasks.extend(poll(rt, intake, link, s, memory) for s in feeds)
    for s in cfg.sources:
        if s.mqtt_topic:
            tasks.append(_mqtt(rt, intake, link, s))
    return tasks


async def _close(store: DeadLetters | FeedMemory) -> None:
    store.close()


async def _mqtt(rt: Runtime, intake: Intake, link: IssuerLink, source: Source) -> None:
    """Documents published on the deployment's broker (QoS 1, persistent session: none is missed while down)."""
    backoff = 0.5
    while not rt.stop.is_set():
        try:
            client = mqtt_client(rt.config.mqtt, f"{rt.config.duty.client_id}-cap-{source.id}", clean_session=False)
            paho = client._client  # acknowledge a document only once the intake took it (as alerts does warnings)
            paho.manual_ack_set(True)
            async with client:
                await client.subscribe(source.mqtt_topic, qos=1)
                backoff = 0.5
                stop = asyncio.ensure_future(rt.stop.wait())
                try:
                    messages = aiter(client.messages)
                    while True:
                        nxt = asyncio.ensure_future(anext(messages))
                        await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
                        if not nxt.done():
                            nxt.cancel()
                            return
                        msg = nxt.result()
                        payload = msg.payload
                        raw = payload if isinstance(payload, (bytes, bytearray)) else str(payload).encode()
                        with contextlib.suppress(Refusal):  # counted, logged and kept by the intake
                            intake.receive(bytes(raw), source, "mqtt")
                            link.poke()
                        if msg.qos > 0:
                            paho.ack(msg.mid, msg.qos)
                finally:
                    stop.cancel()
        except (aiomqtt.MqttError, sqlite3.Error) as exc:  # a document not taken is not acknowledged: sent again
            if _limiter.allow(("mqtt", source.id)):
                log.warning("CAP topic: reconnecting", extra={"kv": {"error": str(exc)[:200]}})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(backoff):
                await rt.stop.wait()
        backoff = min(backoff * 2, 10.0)
