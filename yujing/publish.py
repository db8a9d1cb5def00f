"""Publishing stored bytes, one way for every part: a durable queue drained to the broker, each message
marked delivered only once the broker's PUBACK for it (and for every message before it) has arrived.

    class Outbox:                                       # any durable queue (see Queue below)
        changed: asyncio.Event                          # set when something is added
        async def pending(self, after: int) -> list[Outgoing]: ...   # the next messages past position `after`
        async def delivered(self, msg: Outgoing) -> None: ...        # the broker has it: forget it for good

    async def connected(client: aiomqtt.Client) -> None:   # while connected; returns once `stop` is set
        async with asyncio.TaskGroup() as tg:
            sending = tg.create_task(drain(client, outbox, window=8))
            await stop.wait()
            sending.cancel()

    link = Publisher(cfg.mqtt, "yujing-edge-gw1", name="uplink", logger=log, kv=lambda: {"gateway": "gw1"})
    await link.run(stop, connected)                   # reconnecting with backoff until `stop`

- :func:`drain` publishes the queue's messages in order, QoS 1, with up to ``window`` awaiting their PUBACK,
  and hands each to ``queue.delivered`` in order: the PUBACK of a later message that overtook an earlier one
  (two brokers of a cluster, a retried packet) waits until the earlier one is acknowledged, so a queue may
  forget "everything up to here". After a reconnect it starts again from the queue's oldest message, so a
  message whose PUBACK was lost is sent twice (the receivers de-duplicate by id) — never zero times. It
  publishes through anything with aiomqtt's ``publish`` (its QoS 1 ``publish`` returns on PUBACK): a
  :class:`Publisher`'s connection, or a subscriber's own (:class:`yujing.bus.Subscription`, for a stage
  that consumes and publishes on one session).
- :class:`Publisher` owns a connection of its own: MQTT 5 with a clean start (the queue, not the broker, is
  what keeps undelivered messages), MQTT 3.1.1 on the demo's embedded broker (amqtt speaks nothing else),
  TCP_NODELAY (:func:`yujing.mqtt.client`), an optional last will and per-link credentials; it reconnects
  with backoff through :func:`yujing.bus.reconnecting` and tells an outage once (:class:`Outage`).

Only aiomqtt's public API is used: nothing here reaches into aiomqtt's or paho's private attributes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiomqtt

from yujing import mqtt
from yujing.bus import Session, reconnecting
from yujing.config.mqtt import MqttConfig
from yujing.log import Limiter

log = logging.getLogger("yujing.publish")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message of a durable queue: the stored bytes, where they go, and which stored items they carry
    (``first``..``last``: positions in the queue, increasing; one message may carry many, e.g. a batch)."""

    topic: str
    payload: bytes
    first: int
    last: int
    retain: bool = False
    count: int = 1  # stored items it carries (what a rate bound counts)


class Queue(Protocol):
    changed: asyncio.Event  # set when messages are added (drain clears it before each look)

    async def pending(self, after: int) -> Sequence[Outgoing]:
        """The oldest messages whose ``first`` is past ``after``, in order (a bounded number; none: empty)."""

    async def delivered(self, msg: Outgoing) -> None:
        """The broker has ``msg`` (and every message before it): remove it for good."""


class Link(Protocol):
    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None: ...


async def drain(link: Link, queue: Queue, *, window: int = 1, until_empty: bool = False,
                pace: Callable[[Outgoing], float] | None = None) -> None:
    """Publish ``queue`` over ``link`` until cancelled (or, ``until_empty``, until nothing is left to send and
    every message sent is acknowledged). ``pace(msg)``: the real seconds ``msg`` takes of a rate bound.

    A broken link raises ``aiomqtt.MqttError`` at the next publish, or when a PUBACK does not come in time
    (the client's ``timeout``; a :class:`Publisher` notices at once). What was not acknowledged stays in
    the queue for the next connection.
    """
    slots = asyncio.Semaphore(window)
    after = 0
    before: asyncio.Task[bool] | None = None  # the previous message's: its PUBACK comes first
    next_ok = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        while True:
            queue.changed.clear()
            batch = await queue.pending(after)
            if not batch:
                if until_empty:
                    break
                await queue.changed.wait()
                continue
            for msg in batch:
                if pace is not None:
                    now = time.monotonic()
                    if next_ok > now:
                        await asyncio.sleep(next_ok - now)
                    next_ok = max(next_ok, now) + pace(msg)
                await slots.acquire()
                after = msg.last
                before = tg.create_task(_one(link, queue, msg, before, slots))


async def _one(link: Link, queue: Queue, msg: Outgoing, before: asyncio.Task[bool] | None,
               slots: asyncio.Semaphore) -> bool:
    """Publish ``msg``; once it and the message before it are acknowledged, tell the queue. True if told."""
    try:
        await link.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)  # returns on PUBACK
        if before is not None:
            await asyncio.wait([before])  # its failure is the task group's to raise, not ours
            if before.cancelled() or before.exception() is not None or not before.result():
                return False
        await queue.delivered(msg)
        return True
    finally:
        slots.release()


class Outage:
    """A link's outage told once: its first failure, then at most a line a minute with the count of the rest,
    and one line when the link is back saying how long it was down (only if the outage made a line).

    A 60 s broker outage made hundreds of lines when every reconnect attempt logged one.
    """

    def __init__(self, name: str, logger: logging.Logger, kv: Callable[[], dict[str, object]]) -> None:
        self.name, self.log, self.kv = name, logger, kv
        self.limiter = Limiter(60.0)
        self.since: float | None = None  # monotonic time of the current outage's first failure
        self.failures = 0  # failed attempts in the current outage
        self.logged = False  # whether this outage made a line (if not, its end makes none either)

    def down(self, exc: BaseException, retry_s: float) -> None:
        if self.since is None:
            self.since, self.failures, self.logged = time.monotonic(), 0, False
        self.failures += 1
        if self.limiter.allow("down"):
            self.logged = True
            self.log.warning("%s down", self.name, extra={"kv": {
                **self.kv(), "error": str(exc) or type(exc).__name__, "retry_s": round(retry_s, 3),
                "down_s": round(time.monotonic() - self.since, 1),
                "suppressed": self.limiter.take_suppressed("down")}})

    def up(self) -> None:
        if self.since is None:
            self.log.info("%s connected", self.name, extra={"kv": self.kv()})
        elif self.logged:
            self.log.info("%s back", self.name, extra={"kv": {
                **self.kv(), "down_s": round(time.monotonic() - self.since, 1), "failures": self.failures}})
        self.since = None


class Publisher:
    """A connection that publishes (``await run(stop, body)``): connect, run ``body(client)``, and on a broken
    link connect again after a wait doubling from ``first_s`` to ``max_s`` (real seconds), until ``stop``.

    ``name`` and ``kv()`` make the outage's log lines (``"<name> down"``, ``"<name> back"``) on ``logger``;
    ``on_failure`` hears of every failed connection or broken link (a counter, say). ``will()`` is the last
    will of each new connection (made as it connects: a heartbeat's counts are those of that moment).
    """

    def __init__(self, cfg: MqttConfig, client_id: str, *, name: str, logger: logging.Logger = log,
                 kv: Callable[[], dict[str, object]] = dict, will: Callable[[], aiomqtt.Will] | None = None,
                 username: str | None = None, password: str | None = None, timeout_s: float | None = None,
                 first_s: float = 0.5, max_s: float = 30.0,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.cfg, self.name = cfg, name
        self.session = Session(client_id)
        self.will, self.username, self.password, self.timeout_s = will, username, password, timeout_s
        self.first_s, self.max_s = first_s, max_s
        self.on_failure = on_failure
        self.outage = Outage(name, logger, kv)
        self.connected = asyncio.Event()  # set while a connection is up

    def client(self) -> aiomqtt.Client:
        v5 = not self.cfg.embedded  # the embedded demo broker (amqtt) speaks 3.1.1 only
        return mqtt.client(
            self.cfg, self.session.client_id, clean_session=None if v5 else True,  # type: ignore[arg-type]
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=self.will() if self.will else None, timeout=self.timeout_s, username=self.username, password=self.password,
            **({"clean_start": True} if v5 else {}),  # paho refuses clean_start on 3.1.1
        )

    async def run(self, stop: asyncio.Event, body: Callable[[aiomqtt.Client], Awaitable[Any]]) -> None:
        """Connect and run ``body(client)``, again after a broken link, until ``stop``; ``body`` returns once
        ``stop`` is set (after what it does on the way out, a last will's goodbye say)."""
        await reconnecting(stop, self.session, lambda: self._connection(body), name=self.name,
                           first_s=self.first_s, max_s=self.max_s, retry_on=(OSError,), on_error=self._failed)

    async def _connection(self, body: Callable[[aiomqtt.Client], Awaitable[Any]]) -> None:
        try:
            async with self.client() as client:
                self.session.connects += 1
                self.outage.up()
                self.connected.set()
                try:
                    await _until_lost(client, body(client))
                finally:
                    self.connected.clear()
        except BaseExceptionGroup as group:  # body's task group: a broken link is one of its tasks' errors
            link, rest = group.split((aiomqtt.MqttError, OSError))
            if link is None or rest is not None:
                raise
            raise _first(link) from group

    def _failed(self, exc: BaseException) -> None:
        if self.on_failure is not None:
            self.on_failure(exc)
        self.outage.down(exc, self.session.retry_s)


async def _until_lost(client: aiomqtt.Client, body: Awaitable[Any]) -> None:
    """Run ``body``; if the link breaks first, cancel it and raise ``aiomqtt.MqttError``.

    A publisher subscribes to nothing, so the message iterator only ever ends by raising when the link
    breaks: that is how a publisher notices a broken link at once (aiomqtt would leave a publish waiting
    for its PUBACK until the client's ``timeout``, and an idle link would not notice at all).
    """
    lost = asyncio.ensure_future(anext(aiter(client.messages)))
    work = asyncio.ensure_future(body)
    try:
        await asyncio.wait({lost, work}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work.done():
            work.cancel()
            await asyncio.wait([work])
        lost.cancel()
    if not work.cancelled() and (work.exception() is not None or not lost.done()):
        work.result()  # done (or failed) first: its result is the connection's
        return
    if not lost.cancelled():
        lost.result()  # raises MqttError ("disconnected")
    raise aiomqtt.MqttError("the link broke")


def _first(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


__all__ = ["Outage", "Outgoing", "Publisher", "Queue", "drain"]
