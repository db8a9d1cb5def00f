"""The collector: MQTT readings in → validate → de-duplicate → batch → store (or spool), ack when durable.

    await serve(rt)                          # until rt.stop; flushes what it holds
    await serve(rt, on_accepted=engine.feed) # also hand each accepted batch (list[Reading]) to rules in-process

MQTT 5 with a persistent session (fixed client id, session expiry) and manual acknowledgements:
a message is PUBACKed only once its readings are in the database or the spool, so after a
SIGKILL the broker redelivers whatever was not yet durable; ``receive_maximum`` caps the
unacknowledged messages in flight (the broker stops sending). Within that window the intake holds
at most ``_MAX_QUEUED_BATCHES`` closed batches waiting for the database: beyond it, it stops reading
the socket (:meth:`yujing.bus.Subscription.pause`) until the sink catches up, so memory is bounded by
readings held, whatever the number of readings per message.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

from collector import metrics as m
from collector.config import CollectorConfig
from collector.rows import Row, decode_rows, to_readings
from collector.loss import LossReport
from collector.sink import Batch, Sink
from collector.spool import Spool
from collector.stores import open_store
from yujing import metrics as http_metrics
from yujing import topics
from yujing.dedup import Dedup
from yujing.errors import PayloadError
from yujing.log import Limiter
from yujing.model import Reading
from yujing.bus import Received, Session, Subscription, end_session, reconnecting
from yujing.provenance import Refusal, Senders
from yujing.runtime import Runtime, tune_gc
from yujing.sqlite import remove_db

log = logging.getLogger("yujing.collector")

OnAccepted = Callable[[list[Reading]], None]
_DEADLETTER_SAMPLE = 65_536
_MAX_QUEUED_BATCHES = 2  # closed batches (each up to batch_size readings) waiting for the sink
RETIRE_QUIET_S = 2.0  # a retiring session is drained after this long without a message (and a round trip)


class Intake:
    """The message callback: decode, de-duplicate, gather into batches for the sink.

    It runs inside the event loop (aiomqtt drives paho's socket from loop readers), so it is plain
    synchronous code; a batch is closed at ``batch_size`` readings or ``flush_interval_s`` after it opened.
    """

    def __init__(self, cfg: CollectorConfig, prefix: str, sink: Sink, dedup: Dedup, rt: Runtime,
                 on_accepted: OnAccepted | None) -> None:
        self.cfg, self.prefix, self.sink, self.dedup, self.rt = cfg, prefix, sink, dedup, rt
        self.on_accepted = on_accepted
        self.senders = Senders(rt.config.gateways)
        self.batch = Batch()
        self.sub: Subscription | None = None  # the live connection (None: acks are void, publishes wait)
        self._timer: asyncio.TimerHandle | None = None
        self._limiter = Limiter(60.0)
        self._now = 0.0
        self._duplicates = 0
        self._messages = 0
        self.received = 0  # messages taken in, counted only while retiring (see _connected)
        self.stopping = False  # set at a clean stop: what arrives after is the broker's to send again

    def on_message(self, msg: Received) -> None:
        if self.stopping:
            return  # neither stored nor acknowledged: the broker sends it again after the restart
        batch = self.batch
        self._messages += 1
        if self._timer is None:  # a new batch opens: one clock reading serves all its messages
            self._now = self.rt.clock.timestamp()
            self._timer = asyncio.get_running_loop().call_later(self.cfg.flush_interval_s, self.close_batch)
        if msg.qos and self.sub is not None:
            batch.acks.append((self.sub.generation, msg.mid, msg.qos))
        try:
            readings = decode_rows(msg.payload, msg.topic, self.cfg.max_payload_bytes)
        except PayloadError as e:
            self._reject(e, msg)
            readings = []
        if readings and self.senders.enforced:
            readings = self._screen(readings, msg)
        if readings:
            fresh = self.dedup.fresh(readings, self._now)
            self._duplicates += len(readings) - len(fresh)
            if fresh:
                batch.readings.extend(fresh)
                if self.on_accepted is not None:
                    try:
                        self.on_accepted(to_readings(fresh))  # built only for this hook
                    except Exception:  # the rules engine's failure must not stop intake
                        if self._limiter.allow("on_accepted"):
                            log.exception("on_accepted hook failed")
        if len(batch.readings) >= self.cfg.batch_size:
            self.close_batch()

    def close_batch(self) -> None:
        """Hand the open batch to the sink (counted here, once per batch, not per message)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = self.batch
        if batch.readings or batch.acks:
            m.MESSAGES.inc(self._messages)
            self._messages = 0
            m.READINGS_IN.inc(len(batch.readings))
            if self._duplicates:
                m.DUPLICATES.inc(self._duplicates)
                self._duplicates = 0
            self.sink.queue.put_nowait(batch)
            self.batch = Batch()
            if self.sub is not None and self.sink.queue.qsize() >= _MAX_QUEUED_BATCHES:
                self.sub.pause()  # the database is slower than the wire: let the broker hold the rest

    def ack(self, acks: list[object]) -> None:
        """PUBACK messages whose readings are durable; ids from an earlier connection are void (redelivered)."""
        sub = self.sub
        if sub is None:
            return
        sub.ack_many(acks)  # type: ignore[arg-type]
        if sub.paused and self.sink.queue.qsize() < _MAX_QUEUED_BATCHES // 2:
            sub.resume()

    def _screen(self, rows: list[Row], msg: Received) -> list[Row]:
        """The readings the topic's gateway may speak for (see :mod:`yujing.provenance`); the others are refused:
        counted, logged once per (reason, gateway) a minute, and the message dead-lettered once per reason."""
        gateway = topics.gateway_of(msg.topic)
        refusal = self.senders.refusal
        refused: dict[Refusal, list[Row]] = {}
        kept = []
        for r in rows:
            why = refusal(gateway, r.gateway, r.site, r.sensor)
            if why is None:
                kept.append(r)
            else:
                refused.setdefault(why, []).append(r)
        for why, bad in refused.items():
            m.REFUSED.labels(why).inc(len(bad))
            key = (why, gateway)
            if self._limiter.allow(key):
                log.warning("refused readings a gateway may not publish", extra={"kv": {
                    "reason": why.value, "topic": msg.topic, "gateway": gateway, "claimed": bad[0].gateway,
                    "site": bad[0].site, "sensor": bad[0].sensor, "readings": len(bad),
                    "suppressed": self._limiter.take_suppressed(key)}})
            if self.cfg.deadletter and self.sub is not None:
                self.sub.publish_nowait(topics.deadletter(self.prefix, why), msg.payload[:_DEADLETTER_SAMPLE])
        return kept if refused else rows

    def _reject(self, e: PayloadError, msg: Received) -> None:
        m.REJECTED.labels(e.reason).inc()
        if self._limiter.allow((e.reason, msg.topic)):
            suppressed = self._limiter.take_suppressed((e.reason, msg.topic))
            log.warning("rejected message", extra={"kv": {"reason": e.reason, "topic": msg.topic, "error": str(e),
                                                          "sample": msg.payload[:200], "suppressed": suppressed}})
        if self.cfg.deadletter and self.sub is not None:
            self.sub.publish_nowait(topics.deadletter(self.prefix, e.reason), msg.payload[:_DEADLETTER_SAMPLE])


def _session_lost(client_id: str) -> None:
    """A persistent session the broker forgot means the messages it held for us are gone: say so, loudly."""
    m.SESSION_LOST.inc()
    log.error("the broker has forgotten the collector's session: readings published while we were away are "
              "lost (is broker persistence on and its directory writable?)", extra={"kv": {"client_id": client_id}})


def subscription(cfg: CollectorConfig, prefix: str) -> str:
    topic = topics.readings(prefix, "+")
    return f"$share/{cfg.share_group}/{topic}" if cfg.share_group else topic


def stale_filters(cfg: CollectorConfig, prefix: str) -> list[str]:
    """The readings filters this client id holds in its session if it ran alone before and now runs as worker 1
    of several (collector/workers.py keeps worker 1 on the configured id and spool), or the other way round."""
    topic = topics.readings(prefix, "+")
    return [topic, f"$share/{default_share_group(cfg)}/{topic}"]


def default_share_group(cfg: CollectorConfig) -> str:
    """The group the workers share when ``share_group`` is not set: the client id, in the characters allowed."""
    return cfg.share_group or re.sub(r"[^A-Za-z0-9_\-]", "-", cfg.client_id)


async def _connected(rt: Runtime, cfg: CollectorConfig, intake: Intake, session: Session,
                     retiring: asyncio.Event | None = None) -> None:
    """One MQTT connection: paho's socket reads feed the intake until ``rt.stop`` or a broken link.

    ``retiring`` (a worker an earlier run had and this one does not, collector/workers.py): subscribe to
    nothing and drop the shared filter from the session, so the broker deals this client no new share; take in
    what the session still holds; set ``retiring``, then ``rt.stop``, once nothing more comes and nothing is held.
    """
    prefix = rt.config.mqtt.topic_prefix
    topic = subscription(cfg, prefix)
    stale = () if rt.config.mqtt.embedded else stale_filters(cfg, prefix)

    def counted(msg: Received) -> None:
        intake.received += 1
        intake.on_message(msg)

    if retiring is not None:
        stale = [topic, *stale]
    sub = Subscription(rt.config.mqtt, session, [] if retiring is not None else [(topic, 1)],
                       receive_maximum=cfg.receive_maximum,
                       on_message=intake.on_message if retiring is None else counted, read_ahead=True,
                       on_session_lost=lambda: _session_lost(cfg.client_id), stale=stale)
    intake.sub = sub  # before connecting: a held session's messages arrive with CONNACK
    try:
        async with sub:
            m.CONNECTED.labels(cfg.client_id).set(1)
            if retiring is None:
                log.info("collector subscribed", extra={"kv": {"topic": topic}})
                await sub.until(rt.stop)
            else:
                drained = asyncio.create_task(_drained(intake, sub, retiring, rt.stop))
                try:
                    await sub.until(rt.stop)
                finally:
                    drained.cancel()
            # A clean stop: take in nothing more (a message read now would be stored after the disconnect, its
            # ack void: stored, and sent again), but go on reading the socket for the round trip that leaving
            # `async with sub` makes (Subscription.sync: the broker reads our last acks before we close).
            intake.stopping = True
            sub.resume()
            intake.close_batch()
            # Acknowledge what the sink makes durable before we disconnect (bounded wait).
            try:
                async with asyncio.timeout(10.0):
                    await intake.sink.queue.join()
            except TimeoutError:
                log.warning("stopping with batches not yet durable; the broker will redeliver them")
    finally:
        intake.sub = None
        intake.close_batch()  # what a broken link left open goes to the sink; its acks are void now
        m.CONNECTED.labels(cfg.client_id).set(0)


async def _drained(intake: Intake, sub: Subscription, retiring: asyncio.Event, stop: asyncio.Event) -> None:
    """A retiring session's end: nothing received for ``RETIRE_QUIET_S``, every batch durable and acknowledged,
    the spool empty, and a round trip to the broker after the last acks brought nothing (the broker sends a
    session's next queued messages as acks free its window, before it answers a later packet). Then sets
    ``retiring`` and ``stop`` (the retiring worker's process has nothing else to do)."""
    sink = intake.sink
    while True:
        seen = intake.received
        await asyncio.sleep(RETIRE_QUIET_S)
        if intake.received != seen:
            continue
        intake.close_batch()
        await sink.queue.join()  # stored or spooled, and acknowledged
        if sink.spool.depth or intake.received != seen:
            continue  # the spool replays on its own; wait for it
        if await sub.sync() and intake.received == seen and sink.queue.empty():
            retiring.set()
            stop.set()
            return


async def serve(rt: Runtime, on_accepted: OnAccepted | None = None, *, retire: bool = False) -> bool:
    """Collect until ``rt.stop``. ``retire``: until ``rt.stop`` or this client's session and spool are drained
    (then the broker is told to forget the session, the spool's file is removed, ``rt.stop`` is set and True is
    returned)."""
    cfg = rt.config.collector
    tune_gc()
    path = rt.config.path(cfg.spool, "collector.spool")
    spool = Spool(path)
    dedup = Dedup(cfg.dedup_window_s, cfg.dedup_max_ids)
    dedup.load(spool.seen_since(rt.clock.timestamp() - cfg.dedup_window_s))
    retiring = asyncio.Event() if retire else None
    try:
        async with open_store(cfg.store, rt.config) as store:
            intake: Intake
            loss = LossReport(rt.config.mqtt.topic_prefix, cfg.client_id, spool, rt.clock, lambda: intake.sub)
            sink = Sink(cfg, store, spool, rt.clock, lambda acks: intake.ack(acks), loss)
            intake = Intake(cfg, rt.config.mqtt.topic_prefix, sink, dedup, rt, on_accepted)
            if not intake.senders.enforced and not retire:
                log.warning("no gateways configured: any authenticated publisher's readings are accepted for any site")
            draining = asyncio.Event()
            sink_task = asyncio.create_task(sink.run(draining))
            # healthy: subscribed and the database answering (spooling keeps readings, but they wait)
            connected = lambda: intake.sub is not None and intake.sub.live
            health = lambda: {"ok": connected() and sink.db_up, "db_up": sink.db_up,
                              "spool_readings": spool.depth, "connected": connected()}
            async with http_metrics.serving(cfg.metrics_host, cfg.metrics_port, health):
                # ids remembered from an earlier run mean the broker should hold a session for us
                session = Session(cfg.client_id, held=len(dedup) > 0)
                try:
                    await reconnecting(rt.stop, session, lambda: _connected(rt, cfg, intake, session, retiring),
                                       name="collector")
                finally:
                    intake.close_batch()
                    draining.set()
                    await sink_task
            if retiring is not None and retiring.is_set():
                await end_session(rt.config.mqtt, cfg.client_id)
    finally:
        spool.close()
    if retiring is None or not retiring.is_set() or spool.depth:
        return False
    remove_db(path)
    log.info("collector session retired: what it held is stored, the broker forgot it, its spool is removed",
             extra={"kv": {"client_id": cfg.client_id, "spool": str(path)}})
    return True
