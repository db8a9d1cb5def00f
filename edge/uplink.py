"""Uplink: drain the outbox to the broker, in order, at a bounded rate; heartbeat on the status topic.

A row leaves the outbox only when the broker has acknowledged the message
carrying it (aiomqtt's QoS 1 ``publish`` returns on PUBACK: paho's
``on_publish`` fires for QoS 1 only when the PUBACK arrives). Within one
connection a row is sent once (``sent_upto``); after a reconnect everything
still in the outbox is sent again from the oldest, so a reading whose PUBACK
was lost arrives twice with the same ``id`` — never zero times.

An outage is logged once, not once per reconnect attempt (a 60 s broker outage made hundreds of
lines): its first failure, then at most one line a minute with the count of the rest, and one line
when the uplink is back, saying how long it was down. Every failure is counted in
``yujing_edge_link_failures_total``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Callable

import aiomqtt
from prometheus_client import Counter, Gauge

from edge.config import GatewayConfig
from edge.outbox import Outbox, Row
from yujing import topics
from yujing.log import Limiter
from yujing.mqtt import client as mqtt_client
from yujing.runtime import Runtime

log = logging.getLogger("yujing.edge.uplink")
SENT = Counter("yujing_edge_published_total", "Readings acknowledged by the broker", ["gateway"])
LINK = Counter("yujing_edge_link_failures_total", "Uplink connections lost or refused", ["gateway"])
CONNECTED = Gauge("yujing_edge_uplink_connected", "1 while the uplink is connected to the broker", ["gateway"])


def batch_payload(gateway: str, rows: list[Row]) -> bytes:
    """A ReadingBatch JSON built from the stored reading JSON, byte for byte what was committed."""
    return ('{"gateway":' + json.dumps(gateway) + ',"readings":[' + ",".join(r.body for r in rows) + "]}").encode()


class Uplink:
    def __init__(self, rt: Runtime, gw: GatewayConfig, outbox: Outbox, heartbeat: Callable[[bool], dict]) -> None:
        self.rt = rt
        self.gw = gw
        self.outbox = outbox
        self.heartbeat = heartbeat
        self.prefix = rt.config.mqtt.topic_prefix
        self.sent = 0
        self.connected = asyncio.Event()
        self.status_changed = asyncio.Event()
        self.finish = asyncio.Event()  # set once the pollers have stopped: flush, say goodbye, return
        self.limiter = Limiter(60.0)
        self.down_since: float | None = None  # monotonic time of the current outage's first failure
        self.failures = 0  # failed attempts in the current outage
        self.down_logged = False  # whether this outage made a line (if not, its end makes none either)

    def _client(self) -> aiomqtt.Client:
        up = self.gw.uplink
        creds = {}
        if up.username is not None:
            creds = {"username": up.username, "password": up.password.get() if up.password else None}
        will = aiomqtt.Will(topics.status(self.prefix, self.gw.id), json.dumps(self.heartbeat(False)), 1, True)
        cfg = self.rt.config.mqtt if up.tls is None else self.rt.config.mqtt.model_copy(update={"tls": up.tls})
        return mqtt_client(cfg, f"yujing-edge-{self.gw.id}", clean_session=True, will=will,
                           timeout=up.publish_timeout_s, **creds)

    async def run(self) -> None:
        """Connect, drain, heartbeat; on any link failure reconnect with backoff. Returns on ``finish``."""
        up = self.gw.uplink
        delay = up.reconnect_s
        while not self.finish.is_set():
            try:
                async with self._client() as client:
                    self.connected.set()
                    CONNECTED.labels(self.gw.id).set(1)
                    delay = up.reconnect_s
                    self._up()
                    await self._connected(client)
                    return
            except* (aiomqtt.MqttError, OSError) as group:
                self._down(group.exceptions[0], delay)
            finally:
                self.connected.clear()
                CONNECTED.labels(self.gw.id).set(0)
            try:
                async with asyncio.timeout(self.rt.clock.real_seconds(delay)):
                    await self.finish.wait()
                return
            except TimeoutError:
                pass
            delay = min(delay * 2, up.reconnect_max_s)

    def _down(self, exc: BaseException, retry_s: float) -> None:
        LINK.labels(self.gw.id).inc()
        if self.down_since is None:
            self.down_since, self.failures, self.down_logged = time.monotonic(), 0, False
        self.failures += 1
        if self.limiter.allow("down"):
            self.down_logged = True
            log.warning("uplink down", extra={"kv": {
                "gateway": self.gw.id, "error": str(exc) or type(exc).__name__, "retry_s": retry_s,
                "down_s": round(time.monotonic() - self.down_since, 1),
                "suppressed": self.limiter.take_suppressed("down")}})

    def _up(self) -> None:
        kv = {"gateway": self.gw.id, "backlog": self.outbox.depth}
        if self.down_since is None:
            log.info("uplink connected", extra={"kv": kv})
        elif self.down_logged:
            log.info("uplink back", extra={"kv": {
                **kv, "down_s": round(time.monotonic() - self.down_since, 1), "failures": self.failures}})
        self.down_since = None

    async def _connected(self, client: aiomqtt.Client) -> None:
        async with asyncio.TaskGroup() as tg:
            drain = tg.create_task(self._drain(client))
            beat = tg.create_task(self._heartbeats(client))
            await self.finish.wait()
            beat.cancel()
            drain.cancel()
        # stopping: a short grace to flush what is already committed, then say goodbye
        try:
            async with asyncio.timeout(2.0):
                await self._drain(client, until_empty=True)
        except (TimeoutError, aiomqtt.MqttError):
            pass
        await client.publish(topics.status(self.prefix, self.gw.id), json.dumps(self.heartbeat(False)),
                             qos=1, retain=True)

    async def _heartbeats(self, client: aiomqtt.Client) -> None:
        while not self.finish.is_set():
            await client.publish(topics.status(self.prefix, self.gw.id), json.dumps(self.heartbeat(True)),
                                 qos=1, retain=True)
            self.status_changed.clear()
            # beat on schedule, or soon after a device changes state. Not asyncio.wait_for: on Python 3.11 it
            # swallows a cancel that comes as the event is set (every device changes state at stop), and this
            # loop then beat on for ever, holding the gateway's stop until the 30 s deadline.
            try:
                async with asyncio.timeout(self.rt.clock.real_seconds(self.gw.heartbeat_s)):
                    await self.status_changed.wait()
                await asyncio.sleep(0.2)  # let a burst of changes (a bus going down) make one beat, not many
            except TimeoutError:
                pass

    async def _drain(self, client: aiomqtt.Client, until_empty: bool = False) -> None:
        up, ob = self.gw.uplink, self.outbox
        topic = topics.readings(self.prefix, self.gw.id)
        window = asyncio.Semaphore(up.inflight)
        sent_upto = 0
        next_ok = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            while True:
                ob.changed.clear()
                rows = await ob.peek(sent_upto, up.batch)
                if not rows:
                    if until_empty:
                        break
                    await ob.changed.wait()
                    continue
                now = time.monotonic()
                if next_ok > now:  # the drain-rate bound, on the scenario clock
                    await asyncio.sleep(next_ok - now)
                next_ok = max(next_ok, now) + self.rt.clock.real_seconds(len(rows) / up.rate_per_s)
                await window.acquire()
                sent_upto = rows[-1].seq
                tg.create_task(self._publish(client, topic, rows, window))

    async def _publish(self, client: aiomqtt.Client, topic: str, rows: list[Row], window: asyncio.Semaphore) -> None:
        try:
            await client.publish(topic, batch_payload(self.gw.id, rows), qos=1)  # returns on PUBACK
            await self.outbox.ack([r.seq for r in rows])
            self.sent += len(rows)
            SENT.labels(self.gw.id).inc(len(rows))
        finally:
            window.release()
