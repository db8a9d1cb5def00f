"""The issuer's link to the bus: publish what it issued (and lift what expired), reconnecting as needed.

Warnings from above go out on the topics rules use, QoS 1, retained (a drill's on a live system unretained,
as rules do: the retained slot is the real state), so alerts takes them with everything else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiomqtt

from prometheus_client import Gauge

from duty.issuer import Issuer
from yujing import topics
from yujing.model import HazardWarning
from yujing.publish import Publisher
from yujing.runtime import Runtime

log = logging.getLogger("yujing.duty")
CONNECTED = Gauge("yujing_duty_mqtt_connected", "1 while the duty office's link to the broker is up")


class IssuerLink:
    def __init__(self, rt: Runtime, issuer: Issuer, client_id: str = "yujing-duty") -> None:
        self.rt = rt
        self.issuer = issuer
        self.client_id = client_id
        self.wake = asyncio.Event()  # set after every issue/update/lift: publish now
        # the issuer's store is the durable queue; the link reconnects with backoff and tells an outage once
        self.link = Publisher(rt.config.mqtt, client_id, name="duty link", logger=log, max_s=10.0)
        self.connected = self.link.connected
        self.retained: dict[str, bytes] = {}  # the current silences list: published again on every connect
        self._dirty: set[str] = set()

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """A request to alerts (kept in the issuer's store until the broker has it), or with ``retain`` the
        whole state of a retained topic (the silences: the latest replaces what was not yet published)."""
        if retain:
            self.retained[topic] = payload
            self._dirty.add(topic)
        else:
            self.issuer.request(topic, payload)
        self.wake.set()

    def poke(self) -> None:
        self.wake.set()

    async def run(self) -> None:
        """Until ``rt.stop``: publish every unpublished version, lift expired warnings when they fall due."""
        await self.link.run(self.rt.stop, self._loop)

    async def _loop(self, client: aiomqtt.Client) -> None:
        prefix = self.rt.config.mqtt.topic_prefix

        async def publish(w: HazardWarning) -> None:
            topic = topics.warning(prefix, w.hazard.value, w.place, w.key)
            await client.publish(topic, w.model_dump_json(), qos=1, retain=w.drill == self.rt.drill)
            log.info("warning from above published", extra={"kv": {"warning": w.id, "source": w.source,
                                                                     "level": w.level.value, "state": w.state.value}})

        self._dirty |= set(self.retained)
        CONNECTED.set(1)
        try:
            await self._serve(client, publish)
        finally:
            CONNECTED.set(0)

    async def _serve(self, client: aiomqtt.Client, publish: Callable[[HazardWarning], Awaitable[None]]) -> None:
        """Until ``rt.stop``; a broken link cancels it (yujing.publish.Publisher watches the link)."""
        while not self.rt.stop.is_set():
            self.wake.clear()
            while self._dirty:
                topic = self._dirty.pop()
                try:
                    await client.publish(topic, self.retained[topic], qos=1, retain=True)
                except BaseException:
                    self._dirty.add(topic)
                    raise
            for seq, topic, payload in self.issuer.requests():
                await client.publish(topic, payload, qos=1)
                self.issuer.request_sent(seq)
            for w in self.issuer.expire(self.rt.clock.now()):
                log.info("warning expired: lifted", extra={"kv": {"warning": w.id}})
            await self.issuer.flush(publish)
            nxt = self.issuer.next_expiry()
            wait_s = 3600.0 if nxt is None else max(0.0, (nxt - self.rt.clock.now()).total_seconds())
            stop = asyncio.ensure_future(self.rt.stop.wait())
            wake = asyncio.ensure_future(self.wake.wait())
            try:
                await asyncio.wait({stop, wake}, timeout=self.rt.clock.real_seconds(wait_s) + 0.01,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                wake.cancel()
