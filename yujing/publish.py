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
  (two brokers of a cluster, a retried packet) waits until the earlier one is settled. After a reconnect
  it starts again from the queue's oldest message, so a message whose PUBACK was lost is sent twice (the
  receivers de-duplicate by id) — never zero times. It publishes through anything with aiomqtt's
  ``publish`` (its QoS 1 ``publish`` returns on PUBACK): a :class:`Publisher`'s connection, or a
  subscriber's own (:class:`yujing.bus.Subscription`, for a stage that consumes and publishes on one
  session).
- A message the broker *refuses* (MQTT 5: a PUBACK reason code ≥ 0x80, e.g. 0x87 when its ACL does not let
  this client write the topic; :class:`yujing.mqtt.Refused`) is never taken for delivered: it stays in the
  queue, the link's :class:`Hold` counts it by reason and says so once, and the queue is offered again after
  a wait doubling to ``Hold.max_s`` (so once the ACL is fixed the backlog goes out by itself, and a refusing
  broker is not hammered meanwhile). A message the broker took after a refused one is still delivered: each
  queue forgets its messages one by one (``delivered`` never means "everything before it").
- :class:`Publisher` owns a connection of its own: MQTT 5 with a clean start (the queue, not the broker, is
  what keeps undelivered messages), MQTT 3.1.1 on the demo's embedded broker (amqtt speaks nothing else),
  TCP_NODELAY (:func:`yujing.mqtt.client`), an optional last will and per-link credentials; it reconnects
  with backoff through :func:`yujing.bus.reconnecting` and tells an outage once (:class:`Outage`).

Nothing here reaches into aiomqtt's or paho's private attributes: the reason code of a PUBACK is read by
:class:`yujing.mqtt.Client` (aiomqtt drops it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiomqtt

from prometheus_client import Counter, Gauge

from yujing import mqtt
from yujing.bus import Session, reconnecting
from yujing.config.mqtt import MqttConfig
from yujing.log import Limiter
from yujing.mqtt import Refused

log = logging.getLogger("yujing.publish")
REFUSED = Counter("yujing_publish_refused_total",
                  "Messages the broker refused (MQTT 5 PUBACK reason code >= 0x80), kept to be offered again",
                  ["link", "reason"])
HELD = Gauge("yujing_publish_held", "1 while a link holds its queue because the broker refused a message", ["link"])


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
        """The broker has ``msg`` (every message before it was delivered too, or refused and kept):
        remove ``msg`` for good (that one only)."""


class Link(Protocol):
    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None: ...


async def drain(link: Link, queue: Queue, *, window: int = 1, until_empty: bool = False,
                pace: Callable[[Outgoing], float] | None = None, hold: Hold | None = None) -> None:
    """Publish ``queue`` over ``link`` until cancelled (or, ``until_empty``, until nothing is left to send and
    every message sent is acknowledged). ``pace(msg)``: the real seconds ``msg`` takes of a rate bound.

    A broken link raises ``aiomqtt.MqttError`` at the next publish, or when a PUBACK does not come in time
    (the client's ``timeout``; a :class:`Publisher` notices at once). What was not acknowledged stays in
    the queue for the next connection.

    A message the broker refuses (:class:`yujing.mqtt.Refused`: its PUBACK's reason code ≥ 0x80) stays in
    the queue too: nothing more is sent, the messages already in flight are settled, and ``hold`` (one per
    link, so its backoff outlives reconnects) counts it, says so once and waits before the queue is offered
    again from its oldest message, waits doubling up to ``hold.max_s``: so an installer who fixes the
    broker's ACL sees the backlog go out by itself, and a refusing broker is never hammered.
    """
    hold = hold if hold is not None else Hold(type(queue).__name__.strip("_").lower())  # its metrics label
    while True:
        await hold.ready()
        if await _drain(link, queue, window, until_empty, pace, hold) is None:
            return


async def _drain(link: Link, queue: Queue, window: int, until_empty: bool,
                 pace: Callable[[Outgoing], float] | None, hold: Hold) -> Refused | None:
    """One pass of :func:`drain`: returns once the broker refused a message (that refusal), or ``until_empty``
    and done (None)."""
    slots = asyncio.Semaphore(window)
    offer = hold.begin()
    after = 0
    before: asyncio.Task[bool] | None = None  # the previous message's: its PUBACK comes first
    next_ok = time.monotonic()
    refused: list[Refused] = []
    refusal = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        while not refused:
            queue.changed.clear()
            batch = await queue.pending(after)
            if not batch:
                if until_empty:
                    break
                await _either(queue.changed, refusal)
                continue
            for msg in batch:
                if pace is not None:
                    now = time.monotonic()
                    if next_ok > now:
                        await asyncio.sleep(next_ok - now)
                    next_ok = max(next_ok, now) + pace(msg)
                await slots.acquire()
                if refused:  # send nothing more: the broker refuses this queue's messages (for now)
                    slots.release()
                    break
                after = msg.last
                before = tg.create_task(_one(link, queue, msg, before, slots, refused, refusal, hold, offer))
    return refused[0] if refused else None


async def _one(link: Link, queue: Queue, msg: Outgoing, before: asyncio.Task[bool] | None,
               slots: asyncio.Semaphore, refused: list[Refused], refusal: asyncio.Event, hold: Hold,
               offer: int) -> bool:
    """Publish ``msg``; once it and the message before it are settled, tell the queue. True if settled:
    delivered, or refused and kept in the queue (each queue forgets its messages one by one, so one kept
    does not hold back the delivery of a later one the broker took)."""
    try:
        try:
            await link.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)  # returns on PUBACK
            accepted = True
        except Refused as exc:
            refused.append(exc)
            refusal.set()
            hold.refused(exc, offer)
            accepted = False
        if before is not None:
            await asyncio.wait([before])  # its failure is the task group's to raise, not ours
            if before.cancelled() or before.exception() is not None or not before.result():
                return False
        if accepted:
            await queue.delivered(msg)
            hold.accepted(offer)
        return True
    finally:
        slots.release()


async def _either(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


class Hold:
    """What a link does about messages the broker refuses: count them by reason
    (``yujing_publish_refused_total``), say so once (then at most a line a minute), show it
    (``yujing_publish_held`` is 1 while the link holds its queue; ``held`` and ``refused_by`` for a status
    page), and offer the queue again only after a wait: ``first_s`` doubling to ``max_s`` (real seconds), kept
    across reconnects (a broker may drop the connection after refusing: Mosquitto 2.0 with
    ``max_queued_messages 0`` does), reset once the broker takes a message again (one line says so)."""

    def __init__(self, name: str, logger: logging.Logger = log, kv: Callable[[], dict[str, object]] = dict,
                 first_s: float = 1.0, max_s: float = 300.0, on_change: Callable[[], None] | None = None) -> None:
        self.name, self.log, self.kv = name, logger, kv
        self.on_change = on_change  # hears when the queue becomes held, and when it is released
        self.first_s, self.max_s = first_s, max_s
        self.wait_s = first_s
        self.held = False  # the queue waits: the broker refused its oldest message offered
        self.until = 0.0  # monotonic: nothing of the queue is offered before
        self.refused_by: dict[str, int] = {}  # reason name -> messages refused (since start)
        self.limiter = Limiter(60.0)
        self.passes = 0  # offers of the queue so far (a drain starts one, and one after each wait)
        self.refused_in = 0  # the offer in which a message was last refused

    def note(self, exc: Refused) -> None:
        """Count and tell a refusal (a message kept elsewhere, or not kept at all: a heartbeat)."""
        self.refused_by[exc.reason] = self.refused_by.get(exc.reason, 0) + 1
        REFUSED.labels(self.name, exc.reason).inc()
        if self.limiter.allow(exc.reason):
            self.log.error("%s: the broker refuses to take messages: kept, offered again later", self.name,
                           extra={"kv": {**self.kv(), "topic": exc.topic, "reason": exc.reason,
                                         "code": f"0x{exc.code:02X}", "retry_s": round(self.wait_s, 3),
                                         "refused_total": sum(self.refused_by.values()),
                                         "suppressed": self.limiter.take_suppressed(exc.reason)}})

    def begin(self) -> int:
        """A new offer of the queue: its number."""
        self.passes += 1
        return self.passes

    def refused(self, exc: Refused, offer: int) -> None:
        """A message of the queue was refused: count it, and hold the queue (once per wait, however many of
        the window were refused)."""
        self.note(exc)
        self.refused_in = max(self.refused_in, offer)
        now = time.monotonic()
        if not self.held or now >= self.until:
            self.until = now + self.wait_s
            self.wait_s = min(self.max_s, self.wait_s * 2)
        if not self.held:
            self.held = True
            HELD.labels(self.name).set(1)
            if self.on_change is not None:
                self.on_change()

    async def ready(self) -> None:
        """Return once the queue may be offered (at once unless held)."""
        if self.held:
            await asyncio.sleep(max(0.0, self.until - time.monotonic()))

    def accepted(self, offer: int) -> None:
        """A message of offer ``offer`` was taken: the hold ends if that offer came after the last refusal
        (a message the broker takes in the same window as a refused one says nothing about the refused)."""
        if not self.held or offer <= self.refused_in:
            return
        self.held, self.wait_s = False, self.first_s
        HELD.labels(self.name).set(0)
        if self.on_change is not None:
            self.on_change()
        self.log.info("%s: the broker takes messages again", self.name,
                      extra={"kv": {**self.kv(), "refused": dict(self.refused_by)}})


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


__all__ = ["Hold", "Outage", "Outgoing", "Publisher", "Queue", "Refused", "drain"]
