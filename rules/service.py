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
import json
import logging
import re
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from rules.engine import Engine
from rules.store import StateStore
from yujing import metrics, mqtt, topics
from yujing.log import Limiter
from yujing.model import HazardWarning, Reading, ReadingBatch
from yujing.runtime import Runtime

log = logging.getLogger("yujing.rules")

READINGS = Counter("yujing_rules_readings_total", "Readings evaluated by the rules engine")
REJECTED = Counter("yujing_rules_rejected_total", "Messages or readings the rules engine rejected", ["reason"])
ISSUED = Counter("yujing_rules_warnings_total", "Warning messages issued", ["hazard", "state"])
OUTBOX = Gauge("yujing_rules_outbox_depth", "Warnings persisted but not yet acknowledged by the broker")
SUBSCRIBED = Gauge("yujing_rules_mqtt_subscribed", "1 while subscribed to readings, heartbeats and loss reports")
# what a Prometheus alert on a silent gateway needs (see deploy/prometheus/): when each gateway was last heard
GATEWAY_SEEN = Gauge("yujing_rules_gateway_last_heartbeat_timestamp_seconds",
                     "When the gateway's last heartbeat was sent (Unix time)", ["gateway"])
GATEWAY_ONLINE = Gauge("yujing_rules_gateway_online", "0 once the gateway said goodbye or its last will came",
                       ["gateway"])

# MQTT 5 receive maximum: messages the broker may send us before we acknowledge any. A save is
# forced at half of it, so the window never closes while state waits for its time to be saved.
ACK_WINDOW = 1000


class RecentIds:
    """A bounded set of recently seen reading ids (oldest forgotten first)."""

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, rid: str) -> bool:
        """True if new."""
        if rid in self._ids:
            return False
        self._ids[rid] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


def client_id(rt: Runtime) -> str:
    """``yujing-rules-<deployment>``: fixed, so the broker keeps the session while we are away."""
    name = rt.config.deployment.name
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower()
    if not slug or slug != name.lower():  # non-ASCII names: keep them apart by a short hash
        slug = (slug + "-" if slug else "") + hashlib.sha1(name.encode()).hexdigest()[:8]
    prefix = rt.config.mqtt.topic_prefix
    if prefix != "yujing":
        slug += "-" + re.sub(r"[^A-Za-z0-9_-]+", "-", prefix)
    return f"yujing-rules-{slug}"[:128]


def parse_readings(payload: bytes) -> list[Reading]:
    """A ReadingBatch, a single Reading, or a JSON list of readings. Raises ValueError with a reason."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, a 5,000-digit integer, [[[[... nesting
        raise ValueError("bad-json") from e
    try:
        if isinstance(doc, dict) and "readings" in doc:
            return list(ReadingBatch.model_validate(doc).readings)
        if isinstance(doc, list):
            return [Reading.model_validate(d) for d in doc]
        return [Reading.model_validate(doc)]
    except ValidationError as e:
        raise ValueError("invalid-reading") from e


def _count(v: Any) -> int | None:
    """A cumulative count from JSON: a non-negative integer, else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


class RulesService:
    def __init__(self, rt: Runtime, ready: asyncio.Event | None = None) -> None:
        self.rt = rt
        self.ready = ready or asyncio.Event()  # set once subscribed (tests wait on it)
        cfg = rt.config
        self.prefix = cfg.mqtt.topic_prefix
        self.store = StateStore(cfg.path(cfg.rules.state, "rules.state.sqlite"))
        self.engine = Engine(cfg, self.store, drill=rt.drill)
        for p in self.engine.problems():
            log.warning("rules: %s", p)
        self.seen = RecentIds()
        for rid in self.store.seen_ids(self.seen.size):
            self.seen.add(rid)
        self.fresh: list[str] = []  # ids of the readings fed since the last save
        self.acks: list[tuple[int, int]] = []  # (mid, qos) of the messages received since the last save
        self.mqtt: paho.Client | None = None  # the connection those acks belong to (None: they are void)
        self.limiter = Limiter(60.0)
        self.work = asyncio.Event()
        self.work.set()  # the outbox may hold warnings from before a crash
        self._flushed = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None

    def commit(self, warnings: list[HazardWarning]) -> None:
        """Save state now if warnings were issued or a save is due; else make sure one follows soon."""
        flush_s = self.rt.config.rules.state_flush_s
        if warnings or len(self.acks) >= ACK_WINDOW // 2 or time.monotonic() - self._flushed >= flush_s:
            self.save(warnings)
        elif self.acks and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(flush_s, self.save)

    def save(self, warnings: list[HazardWarning] | None = None) -> None:
        """State, warnings and the ids of the readings they cover in one transaction; then PUBACK what
        it covers. Warnings are saved with the state that issued them, so a restart never judges
        again what it already announced."""
        warnings = warnings or []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flushed = time.monotonic()  # I/O pacing, not scenario time
        packs, lcs = self.engine.dirty_state()
        if packs or lcs or warnings or self.fresh:
            self.store.save(packs, lcs, warnings, seen=self.fresh, keep_seen=self.seen.size)
        self.fresh = []
        acks, self.acks = self.acks, []
        if self.mqtt is not None:
            for mid, qos in acks:
                self.mqtt.ack(mid, qos)
        for w in warnings:
            ISSUED.labels(w.hazard.value, w.state.value).inc()
            log.info("warning %s", w.title, extra={"kv": {
                "key": w.key, "version": w.version, "state": w.state.value, "level": w.level.value,
                "drill": w.drill}})
        if warnings:
            self.work.set()

    def on_readings(self, topic: str, payload: bytes) -> list[HazardWarning]:
        try:
            readings = parse_readings(payload)
        except ValueError as e:
            reason = str(e)
            REJECTED.labels(reason).inc()
            if self.limiter.allow(("reject", reason, topic)):
                log.warning("rules: rejected a message on %s: %s (%s)", topic, reason, e.__cause__)
            return []
        out: list[HazardWarning] = []
        now = self.rt.clock.now()
        for r in readings:
            if not self.seen.add(r.id):
                REJECTED.labels("duplicate").inc()
                continue
            READINGS.inc()
            self.fresh.append(r.id)
            out += self.engine.feed(r, now)
        return out

    def on_status(self, topic: str, payload: bytes, retained: bool = False) -> list[HazardWarning]:
        """A gateway heartbeat (its shape taken loosely: its arrival alone means the gateway is alive)."""
        if not payload:  # a cleared retained status: nothing to learn
            return []
        online, now = True, self.rt.clock.now()
        when, dropped = now, None
        try:
            doc: Any = json.loads(payload)
            if isinstance(doc, dict):
                online = doc.get("online") is not False
                dropped = _count(doc.get("outbox_dropped"))
                ts = doc.get("ts")
                # a retained status may be old: count silence from when it was sent (a live one counts
                # from now, whatever the gateway's clock says)
                if retained and isinstance(ts, str):
                    sent = datetime.fromisoformat(ts)
                    if sent.tzinfo is not None:
                        when = min(sent, now)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError):
            REJECTED.labels("bad-status").inc()
        gateway = topics.gateway_of(topic)
        GATEWAY_SEEN.labels(gateway).set(when.timestamp())
        GATEWAY_ONLINE.labels(gateway).set(1 if online else 0)
        out = self.engine.heartbeat(gateway, online, when)
        if dropped is not None:
            out += self.engine.loss(gateway, dropped, "outbox", now)
        return out

    def on_loss(self, topic: str, payload: bytes) -> list[HazardWarning]:
        """A component's cumulative count of readings it had to drop (see :func:`yujing.topics.loss`)."""
        if not payload:  # a cleared retained report
            return []
        try:
            doc: Any = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            doc = None
        dropped = _count(doc.get("dropped")) if isinstance(doc, dict) else None
        if dropped is None:
            REJECTED.labels("bad-loss").inc()
            if self.limiter.allow(("reject", "bad-loss", topic)):
                log.warning("rules: rejected a loss report on %s: %r", topic, payload[:200])
            return []
        component = doc.get("component")
        if not isinstance(component, str) or not component:
            component = topics.gateway_of(topic)  # the topic's last level names it too
        reason = doc.get("reason") if isinstance(doc.get("reason"), str) else ""
        return self.engine.loss(component, dropped, reason, self.rt.clock.now())

    async def receive(self, client: aiomqtt.Client) -> None:
        readings_t, status_t, loss_t = topics.readings(self.prefix), topics.status(self.prefix), topics.loss(self.prefix)
        async for msg in client.messages:
            if msg.qos:
                self.acks.append((msg.mid, msg.qos))  # released by the save that covers what it changes
            payload = msg.payload if isinstance(msg.payload, (bytes, bytearray)) else str(msg.payload).encode()
            out: list[HazardWarning] = []
            if msg.topic.matches(readings_t):
                out = self.on_readings(str(msg.topic), bytes(payload))
            elif msg.topic.matches(status_t):
                out = self.on_status(str(msg.topic), bytes(payload), msg.retain)
            elif msg.topic.matches(loss_t):
                out = self.on_loss(str(msg.topic), bytes(payload))
            self.commit(out)

    async def ticks(self) -> None:
        while not await self.rt.sleep(self.rt.config.rules.tick_s):
            self.commit(self.engine.tick(self.rt.clock.now()))

    async def publish(self, client: aiomqtt.Client) -> None:
        retain = self.rt.config.rules.retain
        while True:
            await self.work.wait()
            self.work.clear()
            while rows := self.store.outbox(100):
                for seq, w in rows:
                    # a drill's warning on a live system is never retained: the retained slot is the real state
                    await client.publish(topics.warning(self.prefix, w.hazard.value, w.site, w.key),
                                         w.model_dump_json(), qos=1, retain=retain and w.drill == self.rt.drill)
                    self.store.published(seq)
            OUTBOX.set(self.store.outbox_depth)

    async def session(self, client: aiomqtt.Client) -> None:
        """Receive and publish until stopping or the connection fails (MqttError propagates)."""
        tasks = [asyncio.create_task(self.receive(client), name="rules-receive"),
                 asyncio.create_task(self.publish(client), name="rules-publish"),
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
            self.save()  # and acknowledge, while the connection may still carry it
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    async def run(self) -> None:
        backoff = 1.0
        tick = asyncio.create_task(self.ticks())
        try:
            while not self.rt.stop.is_set():
                try:
                    client = self._client()
                    # aiomqtt has no switch for it (2.5). Not on the demo's embedded broker: it lives and dies with
                    # us (nothing to redeliver), and amqtt gives up on a PUBACK held until our next save, loudly.
                    client._client.manual_ack_set(not self.rt.config.mqtt.embedded)
                    async with client:
                        self.acks.clear()  # message ids of an earlier connection are void: redelivered
                        self.mqtt = client._client
                        SUBSCRIBED.set(1)
                        await client.subscribe([(topics.readings(self.prefix), 1), (topics.status(self.prefix), 1),
                                                (topics.loss(self.prefix), 1)])
                        log.info("rules: subscribed", extra={"kv": {"prefix": self.prefix}})
                        backoff = 1.0
                        self.work.set()
                        self.ready.set()
                        try:
                            await self.session(client)
                        finally:
                            self.mqtt = None
                            SUBSCRIBED.set(0)
                except aiomqtt.MqttError as e:
                    if self.limiter.allow("mqtt-down"):
                        log.warning("rules: MQTT connection lost: %s; retrying", e)
                if self.rt.stop.is_set() or await self._pause(backoff):
                    return
                backoff = min(backoff * 2, 30.0)
        finally:
            tick.cancel()
            await asyncio.gather(tick, return_exceptions=True)
            self.save()
            self.store.close()

    def _client(self) -> aiomqtt.Client:
        mq, cid = self.rt.config.mqtt, client_id(self.rt)
        if mq.embedded:  # the demo's in-process broker (amqtt) speaks 3.1.1 only
            return mqtt.client(mq, cid, clean_session=False)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 86_400  # the broker keeps what we have not acknowledged
        props.ReceiveMaximum = ACK_WINDOW
        return mqtt.client(mq, cid, clean_session=None, protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
                           properties=props)

    async def _pause(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self.rt.stop.wait()
        except TimeoutError:
            return False
        return True


async def serve(rt: Runtime, ready: asyncio.Event | None = None, **_: Any) -> None:
    """Run the rules engine until ``rt.stop`` is set; state is saved on the way out.

    ``ready`` (optional) is set once the service is subscribed.
    """
    service = RulesService(rt, ready)
    cfg = rt.config.rules

    def health() -> dict[str, object]:
        try:
            depth: int | None = service.store.outbox_depth
        except Exception:  # noqa: BLE001  the state file refusing a read is itself what health should say
            depth = None
        ok = service.mqtt is not None and depth is not None
        return {"ok": ok, "connected": service.mqtt is not None, "state_readable": depth is not None,
                "outbox_depth": depth}

    async with metrics.serving(cfg.metrics_host, cfg.metrics_port, health):
        await service.run()
