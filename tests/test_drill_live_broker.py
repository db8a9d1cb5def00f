"""A drill on the live system's broker (``yujing drill --live-broker``, as the console starts it) can neither see
nor touch the live system's messages, on Mosquitto and on the demo's embedded amqtt: its parts hold sessions of
their own (never a live part's client id), and a client is served only the retained messages it subscribed to."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiomqtt
import pytest
from servers import Mosquitto

from simulators.drill import run_drill
from simulators.ports import free_port
from simulators.scenario import Scenario
from yujing.compose import load_config
from yujing.config.mqtt import MqttConfig
from yujing.mqtt import embedded_broker

ZX = Path(__file__).resolve().parent.parent / "config" / "zhongxian"
BROKERS = ["mosquitto", "amqtt"]


async def _broker(kind: str, private_server, stack: contextlib.AsyncExitStack) -> int:
    if kind == "mosquitto":
        return private_server(Mosquitto).port
    port = free_port()
    await stack.enter_async_context(embedded_broker("127.0.0.1", port))
    return port


async def _until(client: aiomqtt.Client, topic: str, timeout_s: float = 15.0) -> list[str]:
    """The topics of every message the client gets up to and including ``topic``."""
    seen: list[str] = []
    async with asyncio.timeout(timeout_s):
        async for msg in client.messages:
            seen.append(str(msg.topic))
            if str(msg.topic) == topic:
                return seen
    return seen


@pytest.mark.parametrize("kind", BROKERS)
async def test_a_client_is_served_only_the_retained_messages_of_topics_it_subscribed_to(kind, private_server):
    async with contextlib.AsyncExitStack() as stack:
        port = await _broker(kind, private_server, stack)
        async with aiomqtt.Client("127.0.0.1", port, identifier="live-collector", clean_session=False) as live:
            await live.subscribe("live/status/+", qos=1)
            await live.publish("live/status/gw-live", b'{"online": true}', qos=1, retain=True)
            await _until(live, "live/status/gw-live")  # the broker holds it, and a live filter matches it
            async with aiomqtt.Client("127.0.0.1", port, identifier="drill-part") as drill:
                await drill.subscribe("drill/#", qos=1)
                await drill.publish("drill/status/end", b"{}", qos=1, retain=True)
                assert await _until(drill, "drill/status/end") == ["drill/status/end"]


def _smoke() -> Scenario:
    return Scenario.model_validate({
        "name": "live broker smoke", "duration": "30m", "speed": 600,
        "rain": [{"sites": ["RG-SHIBAO-01"], "rate_mm_h": [[0, 1], ["30m", 1]]}]})


@pytest.mark.parametrize("kind", BROKERS)
async def test_a_drill_on_the_live_broker_takes_over_no_live_session_and_leaves_live_messages_alone(
        kind, private_server, prefix):
    """The drill's collector and gateway once connected under the live ones' client ids: the broker handed the
    drill the live collector's session (and its messages) and cut the live parts off."""
    cfg, scn = load_config(ZX), _smoke()
    async with contextlib.AsyncExitStack() as stack:
        port = await _broker(kind, private_server, stack)
        live_ids = [cfg.collector.client_id, "yujing-edge-gw-shibao"]  # the live collector, the scripted gateway
        clients = [await stack.enter_async_context(aiomqtt.Client("127.0.0.1", port, identifier=cid,
                                                                  clean_session=False)) for cid in live_ids]
        collector = clients[0]
        await collector.subscribe(f"{prefix}/readings/+", qos=1)
        await collector.subscribe(f"{prefix}/status/+", qos=1)
        await collector.publish(f"{prefix}/status/gw-live", b'{"online": true}', qos=1, retain=True)
        await _until(collector, f"{prefix}/status/gw-live")
        cut_off = [asyncio.create_task(_until(c, "never", 3600)) for c in clients]  # ends only if the link drops
        try:
            # as the demo's config says of its broker: embedded (amqtt, MQTT 3.1.1), already running (live_broker)
            mqtt = MqttConfig(port=port, topic_prefix=prefix, embedded=kind == "amqtt")
            doc = await run_drill(cfg, scn, mqtt=mqtt, live_broker=True)
            assert not [t for t in cut_off if t.done()], "a live part was cut off by a drill's part of the same id"
        finally:
            for t in cut_off:
                t.cancel()
            await asyncio.gather(*cut_off, return_exceptions=True)
        assert doc["series"], "the drill ran and read its gauge"
        await collector.publish(f"{prefix}/readings/gw-live", b"[]", qos=1)
        assert (await _until(collector, f"{prefix}/readings/gw-live"))[-1] == f"{prefix}/readings/gw-live"
        async with aiomqtt.Client("127.0.0.1", port, identifier="after-the-drill") as after:
            await after.subscribe(f"{prefix}/status/gw-live", qos=1)
            assert await _until(after, f"{prefix}/status/gw-live"), "the live heartbeat is still retained"
