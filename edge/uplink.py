"""Uplink: drain the outbox to the broker, in order, at a bounded rate; heartbeat on the status topic.

The publishing is :mod:`yujing.publish`'s, as for every part that publishes what it stored: a row leaves the
outbox only when the broker has acknowledged the message carrying it (and every message before it); after
a reconnect everything still in the outbox is sent again from the oldest, so a reading whose PUBACK was
lost arrives twice with the same ``id`` — never zero times. A message is a ``ReadingBatch`` built from the
rows' stored JSON, byte for byte what was committed (:func:`batch_payload`).

An outage is logged once, not once per reconnect attempt (:class:`yujing.publish.Outage`): its first
failure, then at most one line a minute with the count of the rest, and one line when the uplink is back,
saying how long it was down. Every failure is counted in ``yujing_edge_link_failures_total``.

A batch the broker refuses (MQTT 5 PUBACK reason ≥ 0x80: most often 0x87, the broker's ACL does not let this
gateway write its readings topic) stays in the outbox: :class:`yujing.publish.Hold` counts it by reason
(``yujing_publish_refused_total{link="uplink-<gateway>"}``), logs it once, and offers the outbox again after a
wait doubling from ``reconnect_s`` to ``reconnect_max_s``, so once the installer fixes the ACL the backlog goes
out by itself (restart the gateway to try at once). The counts by reason are in the heartbeat's ``refused``
and on the gateway's ``/health`` (``held``: not ok). A refused heartbeat is counted the same way and the next
one is tried on schedule.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable

import aiomqtt
from prometheus_client import Counter, Gauge

from edge.config import GatewayConfig
from edge.outbox import Outbox, Row
from yujing import topics
from yujing.mqtt import Refused
from yujing.publish import Hold, Outgoing, Publisher, drain
from yujing.runtime import Runtime

log = logging.getLogger("yujing.edge.uplink")
SENT = Counter("yujing_edge_published_total", "Readings acknowledged by the broker", ["gateway"])
LINK = Counter("yujing_edge_link_failures_total", "Uplink connections lost or refused", ["gateway"])
CONNECTED = Gauge("yujing_edge_uplink_connected", "1 while the uplink is connected to the broker", ["gateway"])
FLUSH_S = 2.0  # at stop: how long the uplink may take to send what is already committed


def batch_payload(gateway: str, rows: list[Row]) -> bytes:
    """A ReadingBatch JSON built from the stored reading JSON, byte for byte what was committed."""
    return ('{"gateway":' + json.dumps(gateway) + ',"readings":[' + ",".join(r.body for r in rows) + "]}").encode()


class Batches:
    """The outbox as a :class:`yujing.publish.Queue`: up to ``uplink.batch`` rows per message."""

    def __init__(self, outbox: Outbox, gateway: str, topic: str, batch: int) -> None:
        self.outbox, self.gateway, self.topic, self.batch = outbox, gateway, topic, batch
        self.changed = outbox.changed
        self.sent = 0  # readings the broker acknowledged

    async def pending(self, after: int) -> list[Outgoing]:
        rows = await self.outbox.peek(after, self.batch)
        if not rows:
            return []
        return [Outgoing(self.topic, batch_payload(self.gateway, rows), rows[0].seq, rows[-1].seq, count=len(rows))]

    async def delivered(self, msg: Outgoing) -> None:
        await self.outbox.ack([msg.first, msg.last])  # one peeked chunk: a contiguous seq range
        self.sent += msg.count
        SENT.labels(self.gateway).inc(msg.count)


class Uplink:
    def __init__(self, rt: Runtime, gw: GatewayConfig, outbox: Outbox, heartbeat: Callable[[bool], dict]) -> None:
        self.rt = rt
        self.gw = gw
        self.outbox = outbox
        self.heartbeat = heartbeat
        self.prefix = rt.config.mqtt.topic_prefix
        self.status_changed = asyncio.Event()
        self.finish = asyncio.Event()  # set once the pollers have stopped: flush, say goodbye, return
        self.queue = Batches(outbox, gw.id, topics.readings(self.prefix, gw.id), gw.uplink.batch)
        up = gw.uplink
        cfg = rt.config.mqtt if up.tls is None else rt.config.mqtt.model_copy(update={"tls": up.tls})
        self.link = Publisher(
            cfg, f"yujing-edge-{gw.id}", name="uplink", logger=log,
            kv=lambda: {"gateway": gw.id, "backlog": outbox.depth},
            will=lambda: aiomqtt.Will(self._status_topic, json.dumps(heartbeat(False)), 1, True),
            username=up.username, password=up.password.get() if up.password else None,
            timeout_s=up.publish_timeout_s, first_s=rt.clock.real_seconds(up.reconnect_s),
            max_s=rt.clock.real_seconds(up.reconnect_max_s), on_failure=lambda _: LINK.labels(gw.id).inc())
        self.connected = self.link.connected
        self.hold = Hold(f"uplink-{gw.id}", log, kv=lambda: {"gateway": gw.id, "backlog": outbox.depth},
                         first_s=rt.clock.real_seconds(up.reconnect_s),
                         max_s=rt.clock.real_seconds(up.reconnect_max_s),
                         on_change=self.status_changed.set)  # a heartbeat says so at once

    @property
    def sent(self) -> int:
        return self.queue.sent

    @property
    def _status_topic(self) -> str:
        return topics.status(self.prefix, self.gw.id)

    async def run(self) -> None:
        """Connect, drain, heartbeat; on any link failure reconnect with backoff. Returns on ``finish``."""
        await self.link.run(self.finish, self._connected)

    async def _connected(self, client: aiomqtt.Client) -> None:
        CONNECTED.labels(self.gw.id).set(1)
        try:
            async with asyncio.TaskGroup() as tg:
                drained = tg.create_task(self._drain(client))
                beat = tg.create_task(self._heartbeats(client))
                await self.finish.wait()
                beat.cancel()
                drained.cancel()
            # stopping: a short grace to flush what is already committed, then say goodbye
            try:
                async with asyncio.timeout(FLUSH_S):
                    await self._drain(client, until_empty=True)
            except* (TimeoutError, aiomqtt.MqttError):
                pass
            await self._beat(client, online=False)
        finally:
            CONNECTED.labels(self.gw.id).set(0)

    async def _drain(self, client: aiomqtt.Client, until_empty: bool = False) -> None:
        up = self.gw.uplink
        await drain(client, self.queue, window=up.inflight, until_empty=until_empty, hold=self.hold,  # the rate
                    pace=lambda msg: self.rt.clock.real_seconds(msg.count / up.rate_per_s))  # bound, scenario clock

    async def _beat(self, client: aiomqtt.Client, *, online: bool) -> None:
        try:
            await client.publish(self._status_topic, json.dumps(self.heartbeat(online)), qos=1, retain=True)
        except Refused as exc:  # counted and said once; the next beat is tried on schedule
            self.hold.note(exc)

    async def _heartbeats(self, client: aiomqtt.Client) -> None:
        while not self.finish.is_set():
            await self._beat(client, online=True)
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
