"""The rules service: readings and gateway heartbeats from MQTT, warnings back to MQTT.

- subscribes with a persistent session (a fixed client id, MQTT 5 session expiry), so readings sent
  while the service is down wait for it in the broker;
- acknowledges a message only once the state it changed is saved (manual PUBACKs, released by each
  save: at once when warnings are issued, else every ``rules.state_flush_s`` or ``ACK_WINDOW / 2``
  messages), so after a SIGKILL the broker redelivers exactly what the saved state lacks;
- de-duplicates readings by id (the edge may re-send after a reconnect); the ids the saved state
  covers are saved with it, so a reading redelivered after a crash between save and PUBACK counts once;
- persists state and the warnings it issued in one SQLite transaction *before* publishing them, and
  publishes from that outbox (QoS 1, deleted on PUBACK): at least once across crashes;
- ticks on the runtime's clock for time-driven rules (silent devices, fire alarms fading);
- turns the readings other parts had to drop (a gateway heartbeat's ``outbox_dropped``, a collector's
  report on ``{prefix}/loss/+``) into equipment warnings for maintainers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import aiomqtt
from prometheus_client import Counter, Gauge

from rules import partition
from rules.engine import Engine
from rules.partition import Share
from rules.saving import ACK_WINDOW, ISSUED, SEEN_IDS, Delivery, Saving  # noqa: F401  (ISSUED: re-exported)
from rules.store import StateStore
from yujing import metrics, topics, wire
from yujing.bus import Received, Session, Subscription, end_session, reconnecting
from yujing.dedup import Dedup
from yujing.errors import ConfigError, PayloadError
from yujing.log import Limiter
from yujing.model import HazardWarning, Reading
from yujing.provenance import Refusal, Senders
from yujing.publish import Outgoing, drain
from yujing.runtime import Runtime
from yujing.sqlite import Writer

log = logging.getLogger("yujing.rules")

READINGS = Counter("yujing_rules_readings_total", "Readings evaluated by the rules engine")
REJECTED = Counter("yujing_rules_rejected_total", "Messages or readings the rules engine rejected", ["reason"])
OUTBOX = Gauge("yujing_rules_outbox_depth", "Warnings persisted but not yet acknowledged by the broker")
SUBSCRIBED = Gauge("yujing_rules_mqtt_subscribed", "1 while subscribed to readings, heartbeats and loss reports")
# what a Prometheus alert on a silent gateway needs (see deploy/prometheus/): when each gateway was last heard
GATEWAY_SEEN = Gauge("yujing_rules_gateway_last_heartbeat_timestamp_seconds",
                     "When the gateway's last heartbeat was sent (Unix time)", ["gateway"])
GATEWAY_ONLINE = Gauge("yujing_rules_gateway_online", "0 once the gateway said goodbye or its last will came",
                       ["gateway"])

MAX_PAYLOAD_BYTES = 16 * 1_048_576  # far above any uplink's batch: only a runaway payload is refused for size
PUBLISH_WINDOW = 8  # warnings awaiting their PUBACK at once (deleted from the outbox in order)


def client_id(rt: Runtime) -> str:
    """``yujing-rules-<deployment>``: fixed, so the broker keeps the session while we are away."""
    p = rt.config.rules.partition
    return session_id(rt.config, (p.index, p.count) if p.count > 1 and p.index is not None else None)


def session_id(cfg: Any, layout: partition.Layout) -> str:
    """The client id of the rules process of ``layout`` (each partition keeps a session of its own)."""
    name = cfg.deployment.name
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower()
    if not slug or slug != name.lower():  # non-ASCII names: keep them apart by a short hash
        slug = (slug + "-" if slug else "") + hashlib.sha1(name.encode()).hexdigest()[:8]
    prefix = cfg.mqtt.topic_prefix
    if prefix != "yujing":
        slug += "-" + re.sub(r"[^A-Za-z0-9_-]+", "-", prefix)
    if layout is not None:
        slug += f"-p{layout[0]}of{layout[1]}"
    return f"yujing-rules-{slug}"[:128]


def state_path(cfg: Any, mine: Share | None) -> Path:
    """The state file: ``rules.state`` or ``<data_dir>/rules.state.sqlite``; a partition's has its ``p<i>of<n>``
    before the extension (a partition holds its own gateways' state only)."""
    path = cfg.path(cfg.rules.state, "rules.state.sqlite")
    return path if mine is None else path.with_name(f"{path.stem}.{mine.suffix}{path.suffix}")


def parse_readings(payload: bytes, topic: str = "") -> list[Reading]:
    """The readings of one message, as the collector reads them; raises PayloadError with a :class:`wire.Reject`."""
    return wire.decode_readings(payload, topic, MAX_PAYLOAD_BYTES)


class RulesService(Saving):
    def __init__(self, rt: Runtime, ready: asyncio.Event | None = None) -> None:
        self.rt = rt
        self.ready = ready or asyncio.Event()  # set once subscribed (tests wait on it)
        cfg = rt.config
        self.prefix = cfg.mqtt.topic_prefix
        self.share = partition.share(cfg)  # None: one process judges every gateway
        if self.share is not None and not cfg.gateways:
            raise ConfigError(["rules.partition: partitions are by gateway, and the configuration has no gateways"])
        self.store = StateStore(state_path(cfg, self.share))
        # a changed partition count: this process's share of the other layout's state, before the engine reads it
        self.old_sessions = partition.adopt(cfg, self.share, self.store, state_path(cfg, None),
                                            lambda layout: session_id(cfg, layout))
        self.engine = Engine(cfg, self.store, drill=rt.drill)
        if self.share is not None:  # silence is judged only for this partition's devices (it hears no others)
            self.engine.packs["equipment"].watch_only(self.share.devices)  # type: ignore[attr-defined]
            log.info("rules: partition", extra={"kv": {"partition": self.share.index, "of": self.share.count,
                                                        "gateways": len(self.share.gateways),
                                                        "sites": len(self.share.sites)}})
        for p in self.engine.problems():
            log.warning("rules: %s", p)
        self.senders = Senders(cfg.gateways)
        if not self.senders.enforced:
            log.warning("rules: no gateways configured: any authenticated publisher's readings are judged for any site")
        # by count only (no time window): the ids the saved state covers, oldest forgotten first
        self.seen = Dedup(window_s=math.inf, max_ids=SEEN_IDS)
        self.seen.load([(rid, 0.0) for rid in self.store.seen_ids(SEEN_IDS)])
        self.fresh: list[str] = []  # ids of the readings fed since the last save
        self.acks: list[Delivery] = []  # the messages received since the last save
        self.issued: list[HazardWarning] = []  # warnings issued since the last save (saved with their state)
        # Every use of the state file from here on goes through one worker thread, in order: a save's fsync
        # never stalls the event loop (which the collector and alerts share in `yujing run`).
        self.writer = Writer("rules-state")
        self.saves: set[asyncio.Task[None]] = set()
        self._writing = False  # a save is being written (the next waits for it: see save())
        self._wanted = False  # a save was asked for meanwhile
        # handed to the writer, not yet acknowledged: (its write, or None for the write before; messages; warnings)
        self.unacked: deque[tuple[Future[None] | None, list[Delivery], list[HazardWarning]]] = deque()
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # a save that raised
        self.sub: Subscription | None = None  # the live connection, once subscribed
        # the connection messages arrive on, from before it connects (a held session's backlog comes with CONNACK);
        # acks and dead letters go on it while it is live (acks of an earlier one are void: redelivered)
        self.link: Subscription | None = None
        self.taking = False  # judging what arrives (off once a stop begins: see session)
        self.limiter = Limiter(60.0)
        self.work = asyncio.Event()
        self.work.set()  # the outbox may hold warnings from before a crash
        self._flushed = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._routes: dict[str, int] = {}  # topic -> what it carries (see on_message), matched once per topic
        self._filters = (topics.readings(self.prefix), topics.status(self.prefix), topics.loss(self.prefix))

    def on_readings(self, topic: str, payload: bytes) -> list[HazardWarning]:
        try:
            readings = parse_readings(payload, topic)
        except PayloadError as e:
            self._reject(e, topic)
            return []
        if self.senders.enforced:
            readings = self._screen(topic, payload, readings)
        fresh = self.seen.fresh(readings, 0.0)
        if len(fresh) < len(readings):
            REJECTED.labels("duplicate").inc(len(readings) - len(fresh))
        out: list[HazardWarning] = []
        now = self.rt.clock.now()
        READINGS.inc(len(fresh))  # counted before they are judged, as one by one before
        self.fresh += [r.id for r in fresh]
        feed = self.engine.feed
        for r in fresh:
            out += feed(r, now)
        return out

    def _screen(self, topic: str, payload: bytes, readings: list[Reading]) -> list[Reading]:
        """Only readings the topic's gateway may publish (:mod:`yujing.provenance`): the topic is what the broker's ACL
        authenticated, the payload's ``gateway`` a claim. The others are counted, logged once per (reason, gateway)
        a minute, and the message dead-lettered once per reason."""
        gateway = topics.gateway_of(topic)
        kept: list[Reading] = []
        refused: dict[Refusal, list[Reading]] = {}
        for r in readings:
            why = self.senders.refusal(gateway, r.gateway, r.site, r.sensor)
            if why is None:
                kept.append(r if r.gateway else r.model_copy(update={"gateway": gateway}))
            else:
                refused.setdefault(why, []).append(r)
        for why, bad in refused.items():
            REJECTED.labels(why.value).inc(len(bad))
            key = ("refused", why, gateway)
            if self.limiter.allow(key):
                log.warning("rules: refused readings a gateway may not publish", extra={"kv": {
                    "reason": why.value, "topic": topic, "gateway": gateway, "claimed": bad[0].gateway,
                    "site": bad[0].site, "sensor": bad[0].sensor, "readings": len(bad),
                    "suppressed": self.limiter.take_suppressed(key)}})
            if self.link is not None and self.link.live:
                self.link.publish_nowait(topics.deadletter(self.prefix, why.value), payload[:65_536])
        return kept

    def on_status(self, topic: str, payload: bytes, retained: bool = False) -> list[HazardWarning]:
        """A gateway heartbeat (read loosely: its arrival alone means the gateway is alive)."""
        if not payload:  # a cleared retained status: nothing to learn
            return []
        now = self.rt.clock.now()
        try:
            status = wire.decode_status(payload, topic)
        except PayloadError as e:
            self._reject(e, topic, log_it=False)
            status = wire.GatewayStatus()
        # a retained status may be old: count silence from when it was sent (a live one counts
        # from now, whatever the gateway's clock says)
        when = now
        if retained and status.ts is not None and status.ts.tzinfo is not None:
            when = min(status.ts, now)
        gateway = topics.gateway_of(topic)
        GATEWAY_SEEN.labels(gateway).set(when.timestamp())
        GATEWAY_ONLINE.labels(gateway).set(1 if status.online else 0)
        out = self.engine.heartbeat(gateway, status.online, when)
        if status.outbox_dropped is not None:
            out += self.engine.loss(gateway, status.outbox_dropped, wire.LossReason.OUTBOX, now)
        return out

    def on_loss(self, topic: str, payload: bytes) -> list[HazardWarning]:
        """A component's cumulative count of readings it had to drop (see :func:`yujing.topics.loss`)."""
        if not payload:  # a cleared retained report
            return []
        try:
            report = wire.decode_loss(payload, topic)
        except PayloadError as e:
            self._reject(e, topic)
            return []
        component = report.component or topics.gateway_of(topic)  # the topic's last level names it too
        return self.engine.loss(component, report.dropped, report.reason, self.rt.clock.now())

    def _reject(self, e: PayloadError, topic: str, log_it: bool = True) -> None:
        REJECTED.labels(e.reason).inc()
        if log_it and self.limiter.allow(("reject", e.reason, topic)):
            log.warning("rules: rejected a message", extra={"kv": {"topic": topic, "reason": e.reason,
                                                                  "error": str(e)[:200]}})

    def on_message(self, msg: Received) -> None:
        """One message, called from the socket read (``yujing.bus``: parsed there without paho's per-message objects
        and aiomqtt's queue, which had been ~10 % of the service's CPU); acknowledged by the save that covers it."""
        if not self.taking or self.failed.done():
            return  # stopping: not judged and left unacknowledged, so the broker sends it again
        try:
            link = self.link
            if link is not None and msg.qos:
                self.acks.append(Delivery(link.generation, msg.mid, msg.qos))
            route = self._routes.get(msg.topic)
            if route is None:
                route = self._route(msg.topic)
            out: list[HazardWarning] = []
            if route == 0:
                out = self.on_readings(msg.topic, msg.payload)
            elif route == 1:
                out = self.on_status(msg.topic, msg.payload, msg.retain)
            elif route == 2:
                out = self.on_loss(msg.topic, msg.payload)
            self.commit(out)
        except Exception as exc:  # noqa: BLE001  a bug in judging: the service stops, loudly, as it always did
            if not self.failed.done():
                self.failed.set_exception(exc)

    def _route(self, topic: str) -> int:
        """0 readings, 1 status, 2 loss, 3 none of ours (as ``aiomqtt.Topic.matches`` says)."""
        route = next((i for i, f in enumerate(self._filters) if aiomqtt.Topic(topic).matches(f)), 3)
        if len(self._routes) >= 100_000:  # one per gateway: only a flood of made-up topics gets here
            self._routes.clear()
        self._routes[topic] = route
        return route

    async def ticks(self) -> None:
        while not await self.rt.sleep(self.rt.config.rules.tick_s):
            self.commit(self.engine.tick(self.rt.clock.now()))

    async def publish(self, sub: Subscription) -> None:
        """The outbox to the broker on this connection (yujing.publish: deleted once its PUBACK has come)."""
        await drain(sub, self, window=PUBLISH_WINDOW)

    @property
    def changed(self) -> asyncio.Event:  # (the outbox as a yujing.publish.Queue: changed, pending, delivered)
        return self.work

    async def pending(self, after: int) -> list[Outgoing]:
        retain = self.rt.config.rules.retain
        out = []
        for seq, saved in await self.writer.run(self.store.outbox_json, 100, after):
            w = wire.decode_warning(saved.encode())  # for its topic; what goes out is the saved bytes
            # a drill's warning on a live system is never retained: the retained slot is the real state
            out.append(Outgoing(topics.warning(self.prefix, w.hazard.value, w.site, w.key), saved.encode(),
                                seq, seq, retain=retain and w.drill == self.rt.drill))
        return out

    async def delivered(self, msg: Outgoing) -> None:
        await self.writer.run(self.store.published, msg.last)
        OUTBOX.set(await self.writer.run(lambda: self.store.outbox_depth))

    async def session(self, sub: Subscription) -> None:
        """Receive and publish until stopping or the connection fails (MqttError propagates)."""
        tasks = [asyncio.create_task(sub.until(self.rt.stop), name="rules-receive"),  # (on_message receives)
                 asyncio.create_task(self.publish(sub), name="rules-publish"),
                 asyncio.create_task(self.rt.stop.wait(), name="rules-stop")]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            _, stuck = await asyncio.wait(tasks, timeout=5.0)
            for t in stuck:
                log.error("rules: task %s did not stop", t.get_name())
                t.print_stack()
            # what arrives from here on (while the broker reads our last acks: Subscription.sync) is not judged:
            # it could not be acknowledged any more, and judged now it would count as a duplicate when sent again
            self.taking = False
            self.save_now()  # and acknowledge, while the connection may still carry it
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    async def run(self) -> None:
        for old in self.old_sessions if not self.rt.config.mqtt.embedded else ():
            try:  # its gateways are judged here now: what the broker would go on queueing for it, it need not
                await end_session(self.rt.config.mqtt, old)
            except aiomqtt.MqttError as e:
                log.warning("rules: could not end an old partition's session (it expires on its own)",
                            extra={"kv": {"client_id": old, "error": str(e)}})
        # ids saved with the state mean the broker should hold a session for us
        session = Session(client_id(self.rt), held=len(self.seen) > 0)
        tick = asyncio.create_task(self.ticks())
        connections = asyncio.create_task(reconnecting(self.rt.stop, session, lambda: self.connection(session),
                                                       name="rules", first_s=1.0))
        try:
            await asyncio.wait({connections, self.failed}, return_when=asyncio.FIRST_COMPLETED)
            if self.failed.done():
                connections.cancel()
                await asyncio.gather(connections, return_exceptions=True)
                self.failed.result()  # raises the save's error: the service stops, loudly
            connections.result()
        finally:
            tick.cancel()
            connections.cancel()
            await asyncio.gather(tick, connections, return_exceptions=True)
            try:
                self.save_now()
            finally:
                self.writer.close()
                self.store.close()

    async def connection(self, session: Session) -> None:
        mq = self.rt.config.mqtt
        subs = [(topics.readings(self.prefix), 1), (topics.status(self.prefix), 1), (topics.loss(self.prefix), 1)]
        if self.share is not None:  # its own gateways' topics only (a filter per gateway: brokers take thousands)
            subs = [(t, 1) for g in sorted(self.share.gateways)
                    for t in (topics.readings(self.prefix, g), topics.status(self.prefix, g))]
            if self.share.takes_loss_reports:
                subs.append((topics.loss(self.prefix), 1))
        # No manual acks on the demo's embedded broker: it lives and dies with us (nothing to redeliver), and
        # amqtt gives up on a PUBACK held until our next save, loudly.
        self.link = Subscription(mq, session, subs, receive_maximum=ACK_WINDOW, manual_ack=not mq.embedded,
                                 on_message=self.on_message, read_ahead=True, on_session_lost=self._session_lost)
        self.taking = True
        async with self.link as sub:
            self.sub = sub
            SUBSCRIBED.set(1)
            log.info("rules: subscribed", extra={"kv": {"prefix": self.prefix}})
            self.work.set()
            self.ready.set()
            try:
                await self.session(sub)
            finally:
                self.sub = None
                SUBSCRIBED.set(0)

    def _session_lost(self) -> None:
        log.error("rules: the broker has forgotten our session: readings sent while we were away are lost "
                  "(is broker persistence on?)", extra={"kv": {"client_id": client_id(self.rt)}})


async def serve(rt: Runtime, ready: asyncio.Event | None = None, **_: Any) -> None:
    """Run the rules engine until ``rt.stop`` is set; state is saved on the way out.

    ``ready`` (optional) is set once the service is subscribed.
    """
    if rt.config.rules.partition.count > 1 and rt.config.rules.partition.index is None:
        await partition.supervise(rt)  # one process per partition (rules/partition.py)
        return
    service = RulesService(rt, ready)
    cfg = rt.config.rules

    def health() -> dict[str, object]:
        try:
            # its own read connection: the state file's connection belongs to the writer thread
            depth: int | None = service.store.peek_outbox_depth()
        except Exception:  # noqa: BLE001  the state file refusing a read is itself what health should say
            depth = None
        ok = service.sub is not None and depth is not None
        return {"ok": ok, "connected": service.sub is not None, "state_readable": depth is not None,
                "outbox_depth": depth}

    async with metrics.serving(cfg.metrics_host, cfg.metrics_port, health):
        await service.run()
