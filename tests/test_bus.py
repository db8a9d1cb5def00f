"""The bus (yujing/bus.py) against real Mosquitto: what every stage's "acknowledge only once durable" rests on.

A message not acknowledged is sent again on the next connection of the same session; an acknowledgement
from an earlier connection is void (its packet id may name another message now); a broker that forgot
the session is reported; a subscriber's iteration ends on stop.
"""

from __future__ import annotations

import asyncio

import aiomqtt
from conftest import wait_for

from yujing.bus import Message, Session, Subscription, reconnecting
from yujing.config.mqtt import MqttConfig
from yujing.mqtt_reads import Publish


def _cfg(port: int) -> MqttConfig:
    return MqttConfig(host="127.0.0.1", port=port)


async def _send(port: int, topic: str, *payloads: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as c:
        for p in payloads:
            await c.publish(topic, p, qos=1)


async def _take(sub: Subscription, n: int, timeout_s: float = 10.0) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(timeout_s):
        async for msg in sub.messages():
            got.append(msg)
            if len(got) == n:
                return got
    return got


async def _nothing_more(sub: Subscription, topic: str, port: int) -> list[bytes]:
    """What arrives before a sentinel published now (so 'nothing' is waited for, not slept on)."""
    await _send(port, topic, b"sentinel")
    out = []
    async with asyncio.timeout(10):
        async for msg in sub.messages():
            msg.ack()
            if msg.payload == b"sentinel":
                return out
            out.append(msg.payload)
    return out


async def test_a_message_left_unacknowledged_is_sent_again_on_the_next_connection(mosquitto, prefix):
    topic, session = f"{prefix}/x", Session(f"{prefix}-c")
    async with Subscription(_cfg(mosquitto.port), session, [(topic, 1)]):
        pass  # the session exists now: what is published next waits for it
    await _send(mosquitto.port, topic, b"a", b"b", b"c")
    async with Subscription(_cfg(mosquitto.port), session, [(topic, 1)]) as sub:
        first = await _take(sub, 3)
        assert [m.payload for m in first] == [b"a", b"b", b"c"]
        first[0].ack()  # "a" is durable; "b" and "c" are not
    async with Subscription(_cfg(mosquitto.port), session, [(topic, 1)]) as sub:
        again = await _take(sub, 2)
        assert sorted(m.payload for m in again) == [b"b", b"c"]
        for m in again:
            m.ack()
        assert await _nothing_more(sub, topic, mosquitto.port) == []


async def test_an_acknowledgement_from_an_earlier_connection_is_void(mosquitto, prefix):
    topic, session = f"{prefix}/x", Session(f"{prefix}-c")
    async with Subscription(_cfg(mosquitto.port), session, [(topic, 1)]):
        pass
    await _send(mosquitto.port, topic, b"m")
    async with Subscription(_cfg(mosquitto.port), session, [(topic, 1)]) as sub:
        (old,) = await _take(sub, 1)
    async with Subscription(_cfg(mosquitto.port), session, [(topic, 1)]) as sub:
        (redelivered,) = await _take(sub, 1)
        assert redelivered.payload == b"m" and redelivered.generation == old.generation + 1
        old.ack()  # void: it belongs to the connection before
        sub.ack(old.generation, old.mid, old.qos)  # the same, as the collector acks (ids noted on receipt): void
    async with Subscription(_cfg(mosquitto.port), session, [(topic, 1)]) as sub:
        (still,) = await _take(sub, 1)
        assert still.payload == b"m"  # so the broker still holds it
        still.ack()
        assert await _nothing_more(sub, topic, mosquitto.port) == []


async def test_a_broker_without_the_session_we_held_is_reported(mosquitto, prefix):
    lost: list[str] = []
    session = Session(f"{prefix}-never-seen", held=True)  # e.g. ids persisted by an earlier run
    async with Subscription(_cfg(mosquitto.port), session, [(f"{prefix}/x", 1)],
                            on_session_lost=lambda: lost.append("lost")):
        pass
    assert lost == ["lost"]
    async with Subscription(_cfg(mosquitto.port), session, [(f"{prefix}/x", 1)],
                            on_session_lost=lambda: lost.append("lost again")):
        pass
    assert lost == ["lost"]  # the broker has it now


async def test_reconnecting_connects_again_after_a_broken_link_and_returns_on_stop(mosquitto, prefix):
    stop, session, topic = asyncio.Event(), Session(f"{prefix}-r"), f"{prefix}/x"
    connections: list[int] = []

    async def connection() -> None:
        async with Subscription(_cfg(mosquitto.port), session, [(topic, 1)]) as sub:
            connections.append(sub.generation)
            if len(connections) == 1:
                raise aiomqtt.MqttError("the link broke")  # as a broken socket would end the first
            async for msg in sub.messages(stop):
                msg.ack()

    task = asyncio.create_task(reconnecting(stop, session, connection, name="test", first_s=0.05))
    await wait_for(lambda: len(connections) >= 2, 10, "a second connection after the broken one")
    stop.set()
    async with asyncio.timeout(10):
        await task
    assert connections == [1, 2]


async def test_a_read_ahead_consumer_gets_every_message_in_order_and_one_write_acknowledges_them_all(mosquitto, prefix):
    """The collector's way in: PUBLISH parsed off paho's reads (messages longer than one 64 KiB read, and
    many per read), PUBACKs of many messages sent as one packet; what was acknowledged is never sent again."""
    topic, session = f"{prefix}/x", Session(f"{prefix}-fast")
    async with Subscription(_cfg(mosquitto.port), session, [(topic, 1)]):
        pass
    payloads = [b"%d:" % i + b"y" * (200_000 if i % 97 == 5 else i % 300) for i in range(600)]
    await _send(mosquitto.port, topic, *payloads)
    got: list = []
    async with Subscription(_cfg(mosquitto.port), session, [(topic, 1)], receive_maximum=1000,
                            on_message=got.append, read_ahead=True) as sub:
        await wait_for(lambda: len(got) >= len(payloads), 60, "every message")
        assert [m.payload for m in got] == payloads and {m.qos for m in got} == {1}
        # all parsed off our reads, none through paho's reader, though many straddled two reads
        assert {type(m) for m in got} == {Publish}
        sub.ack_many([(sub.generation, m.mid, m.qos) for m in got[:500]])
        # The broker reads a connection's packets in order: a PUBLISH answered after the acks means it has read them.
        # (Without it, in 2 of 4 runs under load, acks sent right before the DISCONNECT were lost: sent again.)
        await sub.publish(f"{prefix}/barrier", b"", qos=1)
    again: list = []
    async with Subscription(_cfg(mosquitto.port), session, [(topic, 1)], on_message=again.append,
                            read_ahead=True) as sub:
        await wait_for(lambda: len(again) >= 100, 60, "the 100 not acknowledged, again")
        assert [m.payload for m in again] == payloads[500:]
        sub.ack_many([(sub.generation, m.mid, m.qos) for m in again])
        await _send(mosquitto.port, topic, b"sentinel")
        await wait_for(lambda: again[-1].payload == b"sentinel", 30, "the sentinel")
        assert [m.payload for m in again[100:]] == [b"sentinel"]  # nothing acknowledged came back
        sub.ack_many([(sub.generation, again[-1].mid, 1)])
