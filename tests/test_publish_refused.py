"""A publish the broker refuses (MQTT 5 PUBACK reason ≥ 0x80) is never taken for delivered.

Real Mosquitto with an ACL file that does not let the publisher write the topic: Mosquitto answers such a
QoS 1 PUBLISH with PUBACK 0x87 ("not authorised"). The stored messages must stay, be counted by reason,
not be offered again in a tight loop, and go out by themselves once the ACL allows them (SIGHUP reloads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import AsyncIterator

import aiomqtt
import pytest
from conftest import wait_for
from prometheus_client import REGISTRY
from servers import Mosquitto, free_port
from testing.devices import deployment
from testing.edge import Collected, collect, outbox_ids

from edge.service import serve
from simulators.devices import simulate_devices
from simulators.devices.values import Constant
from yujing.clock import Clock
from yujing.config.mqtt import MqttConfig
from yujing.mqtt import Refused
from yujing.publish import Hold, Outgoing, Publisher, drain
from yujing.runtime import Runtime

pytestmark = pytest.mark.timeout(90)
# The session broker's "max_queued_messages 0" (unbounded, for benchmarks) makes Mosquitto 2.0.11 drop the
# connection right after it refuses a QoS 1 publish; a bounded queue (as deploy/mosquitto/yujing.conf has)
# keeps it up. (The hold outlives reconnects, so either way the refused messages are not re-sent at once.)
BOUNDED_QUEUES = "max_queued_messages 1000\n"


class Acl:
    """A Mosquitto ACL file for anonymous clients (everyone reads; writes only where :meth:`allow` says)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="yujing-acl-"))  # Mosquitto may drop root: readable by all
        self.dir.chmod(0o755)
        self.path = self.dir / "acl"

    def allow(self, *writable: str) -> None:
        self.path.write_text("topic read #\n" + "".join(f"topic write {t}\n" for t in writable))
        self.path.chmod(0o644)


def refused(link: str) -> float:
    return REGISTRY.get_sample_value("yujing_publish_refused_total", {"link": link, "reason": "Not authorized"}) or 0.0


def reload(broker: Mosquitto) -> None:
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGHUP)  # Mosquitto reads its ACL file again


def level_gauge(port: int) -> dict:
    return {"id": "lv-1", "type": "modbus_tcp", "site": "RES-1", "port": port, "interval_s": 0.05,
            "timeout_s": 0.5, "registers": [{"quantity": "level_m", "unit": "m", "address": 0, "type": "float32",
                                             "order": "CDAB", "min": 150, "max": 200}]}


def depth(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


async def test_readings_the_broker_refuses_stay_in_the_outbox_counted_and_go_out_once_the_acl_allows_them(
        private_server, prefix, tmp_path):
    acl = Acl()
    acl.allow(f"{prefix}/status/#")  # the heartbeat may go; the readings topic may not
    broker = private_server(Mosquitto, extra_conf=f"acl_file {acl.path}\n{BOUNDED_QUEUES}")
    port = free_port()
    gw = {"id": "gw-acl", "uplink": {"reconnect_s": 0.1, "reconnect_max_s": 0.4, "batch": 10},
          "devices": [level_gauge(port)]}
    cfg = deployment(tmp_path / "cfg", [gw], mqtt_port=broker.port, prefix=prefix)
    outbox = cfg.path("", "edge-gw-acl.outbox")
    got, ready = Collected(), asyncio.Event()
    sub = asyncio.create_task(collect(broker.port, prefix, got, ready))
    await asyncio.wait_for(ready.wait(), 10)
    rt = Runtime(cfg, Clock())
    before = refused("uplink-gw-acl")
    async with simulate_devices(cfg.gateways[0].devices, {"lv-1": {"level_m": Constant(170)}}, Clock()):
        agent = asyncio.create_task(serve(rt))
        try:
            await wait_for(lambda: refused("uplink-gw-acl") > before, 15, "the broker's refusal counted")
            t0, n0 = time.monotonic(), refused("uplink-gw-acl")
            await wait_for(lambda: outbox.exists() and depth(outbox) >= 40, 15, "readings kept while refused")
            # kept, not delivered: nothing reached a subscriber, and the heartbeat says why
            assert got.ids == []
            await wait_for(lambda: got.status.get("gw-acl", {}).get("refused", {}).get("Not authorized", 0) > 0,
                           10, "the heartbeat counting the refusals by reason")
            # not re-sent in a tight loop: one window (8 batches) per wait, the waits at least 0.1 s
            elapsed = time.monotonic() - t0
            again = refused("uplink-gw-acl") - n0
            assert again <= 8 * (elapsed / 0.1 + 2), f"{again} refusals in {elapsed:.2f} s"
            held = outbox_ids(outbox)

            acl.allow(f"{prefix}/#")  # the installer fixes the ACL: the backlog goes out by itself
            reload(broker)
            await wait_for(lambda: set(held) <= set(got.ids), 15, "every kept reading delivered")
        finally:
            rt.stop.set()
            await asyncio.wait_for(agent, 15)
    sub.cancel()
    assert depth(outbox) == 0


class ListQueue:
    """A queue in memory: what it was told of deliveries, and what it still holds."""

    def __init__(self, topics: list[str]) -> None:
        self.items = [Outgoing(t, f"m{i}".encode(), i, i) for i, t in enumerate(topics, 1)]
        self.changed = asyncio.Event()
        self.delivered_in_order: list[int] = []

    async def pending(self, after: int) -> list[Outgoing]:
        return [m for m in self.items if m.first > after]

    async def delivered(self, msg: Outgoing) -> None:
        self.delivered_in_order.append(msg.last)
        self.items.remove(msg)


async def test_drain_keeps_a_refused_message_delivers_those_the_broker_took_and_retries_after_a_wait(
        private_server, prefix):
    acl = Acl()
    acl.allow(f"{prefix}/ok/#")
    broker = private_server(Mosquitto, extra_conf=f"acl_file {acl.path}\n{BOUNDED_QUEUES}")
    queue = ListQueue([f"{prefix}/ok/1", f"{prefix}/no/2", f"{prefix}/ok/3", f"{prefix}/ok/4"])
    hold = Hold("test-drain", first_s=0.2, max_s=0.4)
    async with draining(broker, prefix, queue, hold):
        await wait_for(lambda: hold.held, 10, "the queue held after a refusal")
        await wait_for(lambda: len(queue.items) == 1, 10, "the messages the broker took delivered")
        assert [m.first for m in queue.items] == [2], "the refused message kept"
        assert queue.delivered_in_order == [1, 3, 4]
        await wait_for(lambda: refused("test-drain") >= 2, 10, "offered again after a wait")
        acl.allow(f"{prefix}/#")
        reload(broker)
        await wait_for(lambda: not queue.items, 10, "the refused message delivered once allowed")
        assert queue.delivered_in_order == [1, 3, 4, 2]
        assert not hold.held and hold.refused_by["Not authorized"] >= 2


async def test_a_broker_that_drops_the_connection_after_refusing_is_not_offered_the_queue_at_each_reconnect(
        private_server, prefix):
    acl = Acl()
    acl.allow(f"{prefix}/ok/#")
    broker = private_server(Mosquitto, extra_conf=f"acl_file {acl.path}\n")  # unbounded queues: it drops us
    queue = ListQueue([f"{prefix}/no/{i}" for i in range(1, 5)])
    hold = Hold("test-drops", first_s=0.2, max_s=0.4)
    async with draining(broker, prefix, queue, hold) as link:
        await wait_for(lambda: refused("test-drops") >= 1, 10, "a refusal")
        t0, n0, c0 = time.monotonic(), refused("test-drops"), link.session.connects
        await wait_for(lambda: link.session.connects >= c0 + 4, 20, "reconnects after the broker dropped us")
        elapsed, again = time.monotonic() - t0, refused("test-drops") - n0
        # each offer waits for the hold (0.2 s, then 0.4 s), not for the reconnect (0.05 s)
        assert again <= elapsed / 0.2 + 1, f"{again} refusals in {elapsed:.2f} s"
        acl.allow(f"{prefix}/#")
        reload(broker)
        await wait_for(lambda: not queue.items, 10, "every message delivered once allowed")
    assert queue.delivered_in_order == [1, 2, 3, 4]


@contextlib.asynccontextmanager
async def draining(broker: Mosquitto, prefix: str, queue: ListQueue, hold: Hold) -> AsyncIterator[Publisher]:
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, topic_prefix=prefix)
    stop = asyncio.Event()

    async def connected(client: aiomqtt.Client) -> None:
        sending = asyncio.create_task(drain(client, queue, window=4, hold=hold))
        await stop.wait()
        sending.cancel()
        await asyncio.wait([sending])

    link = Publisher(cfg, f"pub-{prefix}", name="test", first_s=0.05, max_s=0.05)
    run = asyncio.create_task(link.run(stop, connected))
    try:
        yield link
    finally:
        stop.set()
        await asyncio.wait_for(run, 10)


async def test_a_refused_publish_raises_refused_with_its_reason_and_leaves_the_link_up(private_server, prefix):
    acl = Acl()
    acl.allow(f"{prefix}/ok")
    broker = private_server(Mosquitto, extra_conf=f"acl_file {acl.path}\n{BOUNDED_QUEUES}")
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, topic_prefix=prefix)
    stop = asyncio.Event()
    seen: list[object] = []

    async def connected(client: aiomqtt.Client) -> None:
        with pytest.raises(Refused) as refusal:
            await client.publish(f"{prefix}/no", b"x", qos=1)
        seen.append(refusal.value)
        await client.publish(f"{prefix}/ok", b"y", qos=1)  # the same connection carries on
        seen.append("ok")
        stop.set()

    await asyncio.wait_for(Publisher(cfg, f"pub-{prefix}", name="test").run(stop, connected), 15)
    exc, ok = seen
    assert isinstance(exc, Refused) and exc.code == 0x87 and exc.reason == "Not authorized"
    assert exc.topic == f"{prefix}/no" and ok == "ok"
