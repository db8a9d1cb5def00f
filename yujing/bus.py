"""The bus: consuming MQTT with "acknowledge only once durable", one way for every stage.

    session = Session(client_id)                      # outlives connections: generations, "had a session"
    async def connection() -> None:
        async with Subscription(cfg.mqtt, session, [(topic, 1)], receive_maximum=1000) as sub:
            async for msg in sub.messages(rt.stop):
                ...                                   # make what it carries durable, then
                msg.ack()                             # PUBACK: the broker forgets it
    await reconnecting(rt.stop, session, connection, name="rules")

What a :class:`Subscription` owns, so no stage has to:

- **a persistent session**: MQTT 5 with a fixed client id, ``clean_start`` off and a week's session expiry
  (the broker keeps what we have not acknowledged while we are away); MQTT 3.1.1 with ``clean_session`` off
  on the demo's embedded broker (amqtt speaks nothing else);
- **manual acknowledgements**: paho is switched to manual acks *before* connecting (the broker sends a
  session's queued messages right after CONNACK, and paho would otherwise acknowledge them on receipt);
- **generations**: every connection has a number, every message carries it, and an ack of a message from an
  earlier connection is void (the broker redelivers that message; its packet id may now name another);
- **the session-present check**: if we had a session and the broker's CONNACK says it has none, what it held
  for us is gone: ``on_session_lost`` says so (each stage logs and counts it in its own words);
- **backpressure**: ``receive_maximum`` caps unacknowledged messages in flight (MQTT 5: the broker stops
  sending), and :meth:`Subscription.pause` stops reading the socket (TCP holds the broker back) for a consumer
  slower than the wire (:class:`yujing.mqtt.ReadAhead`);
- and :func:`reconnecting`: back off (doubling, real time), log once a minute, start over once connected.

A consumer that needs every microsecond (the collector) hands a synchronous ``on_message`` instead of
iterating: it is called from the socket read with each message (a :class:`yujing.mqtt_reads.Publish`, parsed
there without paho's per-message objects, or paho's own ``MQTTMessage`` for what paho reads: QoS 2), and acks
through :meth:`Subscription.ack_many` with the generation it noted: one write of all the PUBACKs of a batch.

aiomqtt 2.x offers no switch for manual acks, no view of CONNACK's session-present flag and no hook into
paho's reads, so this module — and only this module, with :mod:`yujing.mqtt_reads` and
:class:`yujing.mqtt.Client` (the reason code of a PUBACK) — reaches into
aiomqtt's private ``_client`` (the paho client), ``_disconnected`` (the future a broken link completes) and
paho's ``_handle_on_message`` and ``_packet_queue``. Should either library rename them, the breakage is here,
in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from yujing import mqtt
from yujing.config.mqtt import MqttConfig
from yujing.log import Limiter
from yujing.mqtt_reads import Publish, ReadAhead

log = logging.getLogger("yujing.bus")

SYNC_FILTER = "yujing-sync/never-subscribed"  # what Subscription.sync unsubscribes from
SESSION_EXPIRY_S = 7 * 86_400  # how long the broker keeps an absent subscriber's unacknowledged messages
_PUBACK = 0x4002 << 16  # a PUBACK as one 32-bit word: type 4, remaining length 2, then the packet id
Received = Publish | paho.MQTTMessage  # what an ``on_message`` consumer is handed (the same attribute names)


class Session:
    """What outlives one connection of a persistent subscriber: its client id and connection generations.

    ``held``: the broker should hold a session for us (we connected before, in this process or — the caller
    knows, e.g. from ids it persisted — in an earlier one). Set it at start to have the first CONNACK checked.
    """

    def __init__(self, client_id: str, *, held: bool = False) -> None:
        self.client_id = client_id
        self.generation = 0
        self.held = held
        self.connects = 0  # connections that reached "subscribed" (reconnecting() restarts its backoff on one)
        self.retry_s = 0.0  # reconnecting()'s wait before the next attempt (for its on_error to tell)


class Message:
    """One received message; :meth:`ack` once what it carries is durable (a no-op if its connection is gone)."""

    __slots__ = ("topic", "payload", "qos", "retain", "mid", "generation", "_sub")

    def __init__(self, sub: Subscription, m: aiomqtt.Message) -> None:
        self.topic = str(m.topic)
        payload = m.payload
        self.payload = bytes(payload) if isinstance(payload, (bytes, bytearray)) else str(payload).encode()
        self.qos, self.retain, self.mid = m.qos, m.retain, m.mid
        self.generation = sub.generation
        self._sub = sub

    def matches(self, topic_filter: str) -> bool:
        return aiomqtt.Topic(self.topic).matches(topic_filter)

    def ack(self) -> None:
        self._sub.ack(self.generation, self.mid, self.qos)


class Subscription:
    """One connection of a persistent, manually acknowledging subscriber (``async with``)."""

    def __init__(self, cfg: MqttConfig, session: Session, topics: Sequence[tuple[str, int]], *,
                 receive_maximum: int | None = None, manual_ack: bool = True,
                 on_message: Callable[[Received], None] | None = None, read_ahead: bool = False,
                 on_session_lost: Callable[[], None] | None = None, stale: Sequence[str] = ()) -> None:
        self.cfg, self.session, self.topics = cfg, session, list(topics)
        # Filters an earlier run of this client id may have left in its persistent session (the broker keeps
        # them across connections): dropped after subscribing, or they would go on delivering beside ours.
        self.stale = [t for t in stale if t not in {f for f, _ in self.topics}]
        self.manual_ack = manual_ack
        self.on_session_lost = on_session_lost
        v5 = not cfg.embedded  # the embedded demo broker (amqtt) speaks 3.1.1 only
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            if receive_maximum is not None:
                props.ReceiveMaximum = receive_maximum
        self.client = mqtt.client(
            cfg, session.client_id, clean_session=None if v5 else False, properties=props,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            **({"clean_start": False} if v5 else {}),  # paho refuses clean_start on 3.1.1
        )
        self._paho: paho.Client = self.client._client  # noqa: SLF001 -- see the module docstring
        self._paho.manual_ack_set(manual_ack)
        if on_message is not None:
            # Straight to the consumer: aiomqtt's queue would add a hop per message, and paho's own
            # _handle_on_message matches each topic against a tree of filtered callbacks under two locks.
            # Collector bench (b), one reading per message: 126-130 → 97-109 µs CPU per reading. (With
            # read_ahead, QoS 0/1 PUBLISHes do not reach paho at all: see yujing.mqtt_reads.)
            self._paho.on_message = lambda _c, _u, m: on_message(m)
            self._paho._handle_on_message = on_message  # noqa: SLF001 -- inert, not wrong, if paho renames it
        # (without manual acks paho's own reader must see each PUBLISH: it sends the PUBACK)
        self.reader = (ReadAhead(self.client, on_publish=on_message if manual_ack else None) if read_ahead
                       else None)
        self._present = False
        chained = self._paho.on_connect  # aiomqtt's own; it drops CONNACK's session-present flag

        def on_connect(c: paho.Client, userdata: object, flags: paho.ConnectFlags, *rest: object) -> None:
            self._present = flags.session_present
            chained(c, userdata, flags, *rest)

        self._paho.on_connect = on_connect
        self.generation = 0
        self.live = False

    async def __aenter__(self) -> Subscription:
        # A new generation before connecting: a held session's messages arrive in the same read as CONNACK,
        # before `async with` returns, and must carry this connection's number or their acks are void.
        self.session.generation += 1
        self.generation = self.session.generation
        self.live = True
        try:
            await self.client.__aenter__()
        except BaseException:
            self.live = False
            raise
        try:
            if self.session.held and not self._present and not self.cfg.embedded and self.on_session_lost:
                self.on_session_lost()  # (the embedded demo broker lives and dies with us: no session to lose)
            self.session.held = True
            if self.topics:  # none: a session being retired takes in only what it already holds
                await self.client.subscribe(self.topics)
            if self.stale:
                await self.client.unsubscribe(self.stale)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self.session.connects += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        lost = self.client._disconnected  # noqa: SLF001 -- see the module docstring
        if exc[0] is None and self.manual_ack and not lost.done():
            await self.sync(timeout_s=2.0)  # a clean exit: the broker reads our last acks before we close
        self.live = False
        try:
            await self.client.__aexit__(*exc)
        finally:
            self._read_lost()

    def ack(self, generation: int, mid: int, qos: int) -> None:
        """PUBACK message ``mid`` of connection ``generation``; void for an earlier connection (redelivered)."""
        if qos and self.manual_ack and self.live and generation == self.generation:
            self._paho.ack(mid, qos)

    def ack_many(self, acks: list[tuple[int, int, int]]) -> None:
        """PUBACK many messages, each ``(generation, mid, qos)`` (void for an earlier connection), at once.

        paho queues and sends one packet per ``ack`` (a dict, a deque entry, a writer registered with the
        loop and a ``send`` each): here the QoS 1 acks of a batch go out together, the PUBACK packets one
        after the other in one ``send`` when the socket is writable (the broker reads a stream of packets).
        """
        if not (self.manual_ack and self.live):
            return
        gen, ack = self.generation, self._paho.ack
        mids = []
        for g, mid, qos in acks:
            if g == gen:
                if qos == 1:
                    mids.append(_PUBACK | mid)
                elif qos:
                    ack(mid, qos)
        if mids:  # all of them as one out-packet (one ``send``), and one writer registration
            packet = struct.pack(f"!{len(mids)}I", *mids)
            self._paho._out_packet.append({"command": paho.PUBACK, "mid": 0, "qos": 0, "pos": 0,  # noqa: SLF001
                                           "to_process": len(packet), "packet": packet, "info": None})
            self._paho._call_socket_register_write()  # noqa: SLF001

    async def sync(self, timeout_s: float = 5.0) -> bool:
        """A round trip to the broker, for a clean stop after the last acks: True once the broker has read
        every packet sent before (it answers in order), False if it did not answer in time (or the link broke).

        Closing the socket is not enough: a subscriber's socket still holds messages the broker sent (unread,
        they will be redelivered), and Linux closes a socket with unread data by a TCP reset, on which the
        broker drops what it had not read yet: the last PUBACKs, and the DISCONNECT. The collector's last
        acks before a clean stop were lost that way (the broker sent those messages again after the
        restart). The round trip is an UNSUBSCRIBE of a filter never subscribed: the session is left as it
        was (the UNSUBACK says "no subscription existed"). A clean exit from ``async with`` makes it (a
        consumer stops taking messages in first: what it reads meanwhile is not acknowledged).
        """
        try:
            await self.client.unsubscribe(f"{SYNC_FILTER}/{self.session.client_id}", timeout=timeout_s)
        except aiomqtt.MqttError:
            return False
        return True

    async def messages(self, stop: asyncio.Event | None = None) -> AsyncIterator[Message]:
        """Messages until ``stop`` (then it returns) or a broken link (then ``aiomqtt.MqttError``)."""
        stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
        inbox = aiter(self.client.messages)
        try:
            while True:
                nxt = asyncio.ensure_future(anext(inbox))
                if stopping is not None:
                    await asyncio.wait({nxt, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not nxt.done():
                        nxt.cancel()
                        return
                yield Message(self, await nxt)
        finally:
            if stopping is not None:
                stopping.cancel()

    async def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None:
        """Publish on this connection, waiting for the broker's PUBACK (QoS 1)."""
        await self.client.publish(topic, payload, qos=qos, retain=retain)

    def publish_nowait(self, topic: str, payload: bytes | str, *, qos: int = 0,
                       retain: bool = False) -> paho.MQTTMessageInfo:
        """Publish from synchronous code in the loop (an ``on_message`` consumer); ``is_published()`` tells."""
        return self._paho.publish(topic, payload, qos=qos, retain=retain)

    async def until(self, stop: asyncio.Event) -> None:
        """Wait for ``stop`` (return) or a broken link (``aiomqtt.MqttError``): for ``on_message`` consumers."""
        stopping = asyncio.ensure_future(stop.wait())
        lost = self.client._disconnected  # noqa: SLF001 -- see the module docstring
        try:
            await asyncio.wait({stopping, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not stop.is_set():
            cause = self._read_lost()
            raise aiomqtt.MqttError(f"connection lost: {cause}" if cause else "connection lost")

    def _read_lost(self) -> BaseException | None:
        """The broken link's cause; reading it also keeps asyncio from warning "exception never retrieved"
        (aiomqtt's __aexit__ leaves a failed disconnection future unread)."""
        lost = self.client._disconnected  # noqa: SLF001 -- see the module docstring
        return lost.exception() if lost.done() and not lost.cancelled() else None

    @property
    def paused(self) -> bool:
        return self.reader is not None and self.reader.paused

    def pause(self) -> None:
        """Stop reading the socket (``read_ahead`` only): the broker holds the rest for us."""
        if self.reader is not None:
            self.reader.pause()

    def resume(self) -> None:
        if self.reader is not None:
            self.reader.resume()


async def end_session(cfg: MqttConfig, client_id: str) -> None:
    """Have the broker forget ``client_id``'s persistent session: its subscriptions and anything still queued.

    MQTT 5: a CONNECT with ``clean_start`` discards the session the broker held, and one with no session expiry
    leaves nothing behind once it disconnects.
    """
    async with mqtt.client(cfg, client_id, clean_session=None, clean_start=True,
                           protocol=aiomqtt.ProtocolVersion.V5):
        pass


async def reconnecting(stop: asyncio.Event, session: Session, connection: Callable[[], Awaitable[Any]], *,
                       name: str, first_s: float = 0.5, max_s: float = 30.0,
                       retry_on: tuple[type[BaseException], ...] = (),
                       on_error: Callable[[BaseException], None] | None = None) -> None:
    """Run ``connection()`` (one :class:`Subscription`'s life) until ``stop``.

    A broken link (``aiomqtt.MqttError``) or one of ``retry_on`` ends a connection; we wait (real time,
    doubling from ``first_s`` up to ``max_s``, cut short by ``stop``) and connect again; once a connection
    is subscribed the wait starts over from ``first_s``. Each failure is logged once a minute (or handed to
    ``on_error``, which then does its own telling).
    """
    limiter = Limiter(60.0)
    delay = first_s
    while not stop.is_set():
        connects = session.connects
        try:
            await connection()
        except (aiomqtt.MqttError, *retry_on) as exc:
            session.retry_s = first_s if session.connects != connects else delay
            if on_error is not None:
                on_error(exc)
            elif limiter.allow(type(exc)):
                log.warning("%s: MQTT connection lost; reconnecting", name,
                            extra={"kv": {"error": str(exc), "retry_s": delay}})
        if session.connects != connects:
            delay = first_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
        delay = min(max_s, delay * 2)


__all__ = ["Message", "Session", "Subscription", "end_session", "reconnecting"]
