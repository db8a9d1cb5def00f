"""The one publisher of stored bytes (yujing.publish): delivered only on PUBACK, in order; sent again after a break.

A broker that acknowledges only when the test says so is needed to see the order of PUBACKs; Mosquitto
acknowledges at once. :class:`HeldBroker` speaks just enough MQTT 5 for a publisher (CONNECT, PUBLISH QoS 1,
PINGREQ, DISCONNECT), with every byte on a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field

import pytest

from testing.waits import wait_for
from yujing.config.mqtt import MqttConfig
from yujing.publish import Outgoing, Publisher, drain

pytestmark = pytest.mark.timeout(60)


@dataclass
class Publish:
    connection: int
    mid: int
    topic: str
    payload: bytes


@dataclass
class HeldBroker:
    """Accepts publishers; PUBACKs nothing until :meth:`puback` (``auto``: at once)."""

    auto: bool = False
    connects: list[tuple[int, int]] = field(default_factory=list)  # (protocol level, connect flags)
    got: list[Publish] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        conn = len(self.writers)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                kind, body = await _packet(reader)
                if kind == 0x10:  # CONNECT: "MQTT", level, flags, ...
                    self.connects.append((body[6], body[7]))
                    writer.write(bytes([0x20, 3, 0, 0, 0]))  # CONNACK v5: no session, success, no properties
                elif kind & 0xF0 == 0x30:
                    n = int.from_bytes(body[:2])
                    topic, mid = body[2:2 + n].decode(), int.from_bytes(body[2 + n:4 + n])
                    props, at = _varint(body, 4 + n)
                    self.got.append(Publish(conn, mid, topic, body[at + props:]))
                    if self.auto:
                        self.puback(conn, mid)
                elif kind == 0xC0:
                    writer.write(bytes([0xD0, 0]))
                elif kind == 0xE0:
                    break
                await writer.drain()
        writer.close()

    def puback(self, connection: int, mid: int) -> None:
        self.writers[connection - 1].write(bytes([0x40, 2, mid >> 8, mid & 0xFF]))

    def cut(self) -> None:
        self.writers[-1].transport.abort()


async def _packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    kind = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return kind, await reader.readexactly(length)


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[at]
        at += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, at


class ListQueue:
    """A queue in memory: what a durable queue answers, and the order it was told of deliveries."""

    def __init__(self, n: int) -> None:
        self.items = [Outgoing("t/readings", f"m{i}".encode(), i, i) for i in range(1, n + 1)]
        self.changed = asyncio.Event()
        self.delivered_in_order: list[int] = []

    async def pending(self, after: int) -> list[Outgoing]:
        return [m for m in self.items if m.first > after]

    async def delivered(self, msg: Outgoing) -> None:
        self.delivered_in_order.append(msg.last)
        self.items.remove(msg)


class Recording:
    """The connection, noting each publish that returned (its PUBACK came)."""

    def __init__(self, client) -> None:
        self.client, self.returned = client, []
        sock = client._client.socket()  # (a test may look inside; the publisher itself never does)
        self.nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        await self.client.publish(topic, payload, qos=qos, retain=retain)
        self.returned.append(payload)


@contextlib.asynccontextmanager
async def running(broker: HeldBroker, queue: ListQueue, seen: list[Recording], timeout_s: float = 10.0):
    server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    link = Publisher(MqttConfig(port=port, keepalive_s=5), "test-publisher", name="test", first_s=0.05, max_s=0.1,
                     timeout_s=timeout_s)

    async def body(client) -> None:
        seen.append(Recording(client))
        async with asyncio.TaskGroup() as tg:  # a broken link ends the drain, and with it the connection
            work = tg.create_task(drain(seen[-1], queue, window=3))
            await stop.wait()
            work.cancel()

    task = asyncio.create_task(link.run(stop, body))
    try:
        yield link
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        server.close()


async def test_a_message_is_delivered_only_once_its_puback_and_every_earlier_ones_have_arrived():
    broker, queue, seen = HeldBroker(), ListQueue(3), []
    async with running(broker, queue, seen):
        await wait_for(lambda: len(broker.got) == 3, 10, "three messages in flight at once (the window)")
        assert [p.payload for p in broker.got] == [b"m1", b"m2", b"m3"]  # the stored bytes, in order
        assert broker.connects == [(5, 0x02)]  # MQTT 5, clean start: the queue keeps what is undelivered
        assert seen[0].nodelay  # no Nagle: a PUBLISH is not held for the previous one's TCP ACK
        broker.puback(1, broker.got[2].mid)
        broker.puback(1, broker.got[1].mid)
        await wait_for(lambda: sorted(seen[0].returned) == [b"m2", b"m3"], 10, "PUBACKs of m3 and m2 read")
        assert queue.delivered_in_order == []  # m1 may still be lost: nothing is forgotten yet
        broker.puback(1, broker.got[0].mid)
        await wait_for(lambda: len(queue.delivered_in_order) == 3, 10, "all three delivered")
    assert queue.delivered_in_order == [1, 2, 3]


async def test_what_was_not_acknowledged_when_the_link_broke_is_sent_again_on_the_next_connection():
    broker, queue, seen = HeldBroker(), ListQueue(3), []
    async with running(broker, queue, seen) as link:
        await wait_for(lambda: len(broker.got) == 3, 10, "three messages in flight")
        broker.puback(1, broker.got[0].mid)
        await wait_for(lambda: queue.delivered_in_order == [1], 10, "m1 delivered")
        broker.auto = True
        broker.cut()
        # noticed at once, not at the PUBACK timeout (10 s): the publisher watches the link itself
        await wait_for(lambda: len(queue.delivered_in_order) == 3, 5, "m2 and m3 delivered after reconnecting")
        assert link.session.connects == 2
    assert queue.delivered_in_order == [1, 2, 3]
    again = [p.payload for p in broker.got if p.connection == 2]
    assert again == [b"m2", b"m3"]  # once more each, from the oldest not acknowledged; m1 not again


async def test_over_the_demos_embedded_broker_it_speaks_mqtt_3_1_1_and_delivers_in_order():
    import aiomqtt

    from simulators.ports import free_port
    from yujing.mqtt import embedded_broker

    port = free_port()
    cfg = MqttConfig(port=port, embedded=True)
    queue, got, ready, stop = ListQueue(5), [], asyncio.Event(), asyncio.Event()

    async def subscriber() -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier="test-sub") as c:
            await c.subscribe("t/readings", qos=1)
            ready.set()
            async for m in c.messages:
                got.append(m.payload)

    async def body(client) -> None:
        async with asyncio.TaskGroup() as tg:
            work = tg.create_task(drain(client, queue, window=3))
            await stop.wait()
            work.cancel()

    async with embedded_broker("127.0.0.1", port):
        sub = asyncio.create_task(subscriber())
        await asyncio.wait_for(ready.wait(), 10)
        task = asyncio.create_task(Publisher(cfg, "test-embedded", name="test").run(stop, body))
        await wait_for(lambda: len(queue.delivered_in_order) == 5, 10, "five delivered")
        await wait_for(lambda: len(got) == 5, 10, "five received")
        stop.set()
        await asyncio.wait_for(task, 10)
        sub.cancel()
    assert queue.delivered_in_order == [1, 2, 3, 4, 5]
    assert got == [f"m{i}".encode() for i in range(1, 6)]
