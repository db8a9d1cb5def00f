"""No reading lost, none duplicated after de-duplication by id: broker killed, agent killed (SIGKILL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import aiomqtt
from conftest import ROOT, wait_for
from servers import Mosquitto, free_port

from edge.service import serve
from simulators.devices import simulate_devices
from testing.devices import deployment
from testing.edge import Durable, gauges, outbox_ids, sources
from yujing import topics
from yujing.clock import Clock
from yujing.runtime import Runtime


async def test_killing_the_broker_mid_stream_loses_no_reading_and_the_backlog_drains_in_order(
        private_server, prefix, tmp_path):
    broker = private_server(Mosquitto)
    port, n = free_port(), 4
    cfg = deployment(tmp_path, [{"id": "gwb", "heartbeat_s": 2, "devices": gauges(port, n, 0.05),
                                 "uplink": {"reconnect_s": 0.2, "reconnect_max_s": 0.5, "publish_timeout_s": 2}}],
                     mqtt_port=broker.port, prefix=prefix)
    outbox = cfg.path("", "edge-gwb.outbox")
    clock = Clock()
    rt = Runtime(cfg, clock)
    sub = Durable(broker.port, prefix)
    async with simulate_devices(cfg.gateways[0].devices, sources(n), clock):
        sub_task = asyncio.create_task(sub.run())
        await asyncio.wait_for(sub.subscribed.wait(), 10)
        agent = asyncio.create_task(serve(rt))
        await wait_for(lambda: len(sub.arrivals) >= 120, 20, "1.5 s of readings (the broker has autosaved)")
        await asyncio.to_thread(broker.stop, True)  # SIGKILL
        await wait_for(lambda: len(outbox_ids(outbox)) >= 40, 20, "a backlog while the broker is down")
        await asyncio.to_thread(broker.start)
        await wait_for(lambda: len(set(sub.arrivals)) >= 400, 30, "the stream after the broker is back")
        rt.stop.set()
        await asyncio.wait_for(agent, 15)
        left = outbox_ids(outbox)
        produced = set(sub.arrivals) | set(left)
        await asyncio.sleep(0)  # let the subscriber take what is already in its socket
        sub_task.cancel()
    assert len(produced) >= 400
    assert not left, "a clean stop with the broker up flushes the outbox"
    assert len(set(sub.arrivals)) == len(produced)
    for i in range(1, n + 1):  # the backlog drained in order: each sensor's readings arrive oldest first
        ts = [t for s, t in sub.first.values() if s == f"dg-{i:02d}"]
        assert ts == sorted(ts)


async def test_sigkill_of_the_agent_loses_no_committed_reading_and_only_unacked_ones_are_sent_twice(
        mosquitto, prefix, tmp_path):
    port, n = free_port(), 4
    cfg = deployment(tmp_path, [{"id": "gwk", "heartbeat_s": 2, "devices": gauges(port, n, 0.05),
                                 "uplink": {"rate_per_s": 400, "batch": 20}}],
                     mqtt_port=mosquitto.port, prefix=prefix)
    outbox = cfg.path("", "edge-gwk.outbox")
    clock = Clock()
    sub = Durable(mosquitto.port, prefix)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "edge", str(tmp_path), "--log-level", "WARNING"]
    async with simulate_devices(cfg.gateways[0].devices, sources(n), clock):
        sub_task = asyncio.create_task(sub.run())
        await asyncio.wait_for(sub.subscribed.wait(), 10)
        agent = subprocess.Popen(cmd, env=env, cwd=ROOT)
        try:
            await wait_for(lambda: len(sub.arrivals) >= 100, 20, "readings from the first agent")
            agent.send_signal(signal.SIGKILL)
            await asyncio.to_thread(agent.wait, 10)
            at_kill = outbox_ids(outbox)  # committed, not yet acknowledged: each must still arrive
            seen_before = set(sub.arrivals)
            agent = subprocess.Popen(cmd, env=env, cwd=ROOT)
            await wait_for(lambda: set(at_kill) <= set(sub.arrivals), 20, "the backlog from before the kill")
            count = len(sub.arrivals)
            await wait_for(lambda: len(sub.arrivals) >= count + 100, 20, "new readings from the second agent")
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(agent.wait, 15) == 0
        finally:
            if agent.poll() is None:
                agent.kill()
        await wait_for(lambda: set(outbox_ids(outbox)) <= set(sub.arrivals), 10, "the last flush")
        sub_task.cancel()
    dup = {i for i in sub.arrivals if sub.arrivals.count(i) > 1}
    # a reading arrives twice only when its PUBACK was lost in the kill: it was in the outbox at that moment
    assert dup <= set(at_kill) & seen_before, "the outbox never re-sends an acknowledged reading"
    assert not outbox_ids(outbox)


async def test_a_killed_gateway_is_told_from_a_quiet_one_by_its_retained_last_will(mosquitto, prefix, tmp_path):
    cfg_dir = tmp_path / "cfg"
    deployment(cfg_dir, [{"id": "gw-dead", "heartbeat_s": 3600, "devices": []}], mqtt_port=mosquitto.port,
               prefix=prefix, mqtt={"keepalive_s": 5})
    status: list[dict] = []

    async def watch() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
            await c.subscribe(topics.status(prefix, "gw-dead"), qos=1)
            async for msg in c.messages:
                status.append(json.loads(msg.payload))

    watcher = asyncio.create_task(watch())
    agent = subprocess.Popen([sys.executable, "-m", "edge", str(cfg_dir), "--log-level", "WARNING"],
                             env=os.environ | {"PYTHONPATH": str(ROOT)}, cwd=ROOT)
    try:
        await wait_for(lambda: status and status[-1]["online"] is True, 15, "the gateway's first heartbeat")
        assert {"uptime_s", "outbox_depth", "devices", "ts"} <= set(status[-1])
        agent.send_signal(signal.SIGKILL)
        await asyncio.to_thread(agent.wait, 10)
        await wait_for(lambda: status[-1]["online"] is False, 15, "the last will after 1.5 keepalives")
    finally:
        if agent.poll() is None:
            agent.kill()
        watcher.cancel()
    assert status[-1]["gateway"] == "gw-dead"
