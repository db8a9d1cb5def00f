"""The collector's loss report: a retained message counting the readings a bound forced it to drop.

    {prefix}/loss/collector-<client_id>   {"component": ..., "dropped": <cumulative>, "reason": ..., "ts": ...}

Published QoS 1 and retained, so the rules engine (which raises it as an equipment warning) learns the
total even if it was away when the drop happened. The count lives in the spool file, in the same
transaction as the drop itself (see :meth:`collector.spool.Spool.drop_oldest`), so it survives restarts;
a report the broker has not acknowledged is sent again on the next connection, and after a restart too.

It publishes over the collector's own MQTT connection (``client()`` returns the live subscription, or None
while disconnected) from inside the event loop, like the dead-letter publishes of the intake.
"""

from __future__ import annotations

from typing import Callable

import paho.mqtt.client as paho

from collector.spool import Spool, SpoolUnwritable
from yujing import topics, wire
from yujing.bus import Subscription
from yujing.clock import Clock


class LossReport:
    def __init__(self, prefix: str, client_id: str, spool: Spool, clock: Clock,
                 client: Callable[[], Subscription | None]) -> None:
        self.component = f"collector-{client_id}"
        self.topic = topics.loss(prefix, self.component)
        self.spool, self.clock, self.client = spool, clock, client
        self._acked = spool.reported  # what the broker has (also kept here if the spool cannot record it)
        self._inflight: tuple[Subscription, paho.MQTTMessageInfo, int] | None = None

    def payload(self) -> wire.LossReport:
        return wire.LossReport(component=self.component, dropped=self.spool.dropped, reason=self.spool.reason,
                               ts=self.clock.now())

    def flush(self) -> None:
        """Publish the current count unless the broker has it or it is on its way (cheap: call often)."""
        client = self.client()
        if self._inflight is not None:
            sent_on, info, n = self._inflight
            try:
                published = info.is_published()
            except (ValueError, RuntimeError):  # never queued: send again
                published, sent_on = False, None
            if published:
                self._inflight = None
                self._acked = max(self._acked, n)
                try:
                    self.spool.set_reported(n)
                except SpoolUnwritable:
                    pass  # kept in memory; after a restart the report is sent once more, which is harmless
            elif sent_on is client and client is not None:
                return  # still in flight on this connection
            else:
                self._inflight = None  # the connection that carried it is gone: send again
        if client is None or self._acked >= self.spool.dropped:
            return
        info = client.publish_nowait(self.topic, wire.encode(self.payload()), qos=1, retain=True)
        self._inflight = (client, info, self.spool.dropped)
