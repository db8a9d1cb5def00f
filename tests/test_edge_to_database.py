"""Edge agent → Mosquitto → real collector → InfluxDB 1.6.7: killing the broker (SIGKILL), and separately
killing the agent (SIGKILL), mid-stream loses no reading and duplicates none IN THE DATABASE.

Ground truth for "every reading the agent produced": the outbox's AUTOINCREMENT high-water mark
(``sqlite_sequence``) counts every reading ever committed (nothing is dropped: the limit is far away),
and an independent persistent-session subscriber records every id that crossed the broker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from conftest import ROOT, wait_for
from servers import Mosquitto, free_port
from testing.collector import running
from testing.edge import Durable, gauges, outbox_ids, sources

from collector.config import CollectorConfig, InfluxV1Store
from edge.service import serve as edge
from simulators.devices import simulate_devices
from testing.devices import deployment
from testing.edge import accepted, duplicates, produced, saved_since, stored_ids
from yujing.clock import Clock
from yujing.compose import Config
from yujing.runtime import Runtime


def with_collector(cfg: Config, influx_url: str, db: str, prefix: str) -> Config:
    store = InfluxV1Store(type="influxdb_v1", url=influx_url, database=db, timeout_s=5)
    return cfg.model_copy(update={"collector": CollectorConfig(store=store, client_id=f"c-{prefix}",
                                                               retry_max_s=1)})


async def settled(influx, db: str, outbox: Path, witness: Durable) -> tuple[Counter[str], int]:
    """Wait until the database holds as many distinct ids as the agent produced; return (ids, produced)."""
    total = produced(outbox)

    async def done() -> bool:
        return len(await asyncio.to_thread(stored_ids, influx, db)) >= total

    try:
        await wait_for(done, 20, f"all {total} produced readings in InfluxDB", interval_s=0.2)
    finally:
        ids = await asyncio.to_thread(stored_ids, influx, db)
        print(f"settle: produced={total} stored={len(ids)} seen_on_mqtt={len(set(witness.arrivals))} "
              f"seen_on_mqtt_not_stored={len(set(witness.arrivals) - set(ids))}")
    await wait_for(lambda: set(witness.arrivals) >= set(ids), 10, "the witness subscriber saw every stored id")
    return ids, total


def check(ids: Counter[str], total: int, outbox: Path, witness: Durable, in0: float, dup0: float) -> None:
    assert not outbox_ids(outbox), "the agent stopped cleanly with the broker up: its outbox is empty"
    assert len(ids) == total, f"{len(ids)} distinct ids stored, {total} readings produced"
    assert set(witness.arrivals) == set(ids), "the ids that crossed the broker are exactly the ids stored"
    twice = {i: k for i, k in ids.items() if k > 1}
    assert not twice, f"readings stored in more than one row: {list(twice.items())[:5]}"
    # the collector accepted each reading exactly once; every re-delivery was counted and skipped
    assert accepted() - in0 == total, (accepted() - in0, total)
    redelivered = len(witness.arrivals) - len(set(witness.arrivals))
    print(f"produced={total} stored_rows={sum(ids.values())} collector_duplicates_skipped={duplicates() - dup0:.0f} "
          f"witness_mqtt_arrivals={len(witness.arrivals)} witness_redeliveries={redelivered}")


async def test_sigkill_of_the_broker_mid_stream_stores_every_reading_exactly_once_in_influxdb(
        private_server, influxdb, prefix, tmp_path):
    broker = private_server(Mosquitto)
    port, n = free_port(), 4
    cfg = deployment(tmp_path, [{"id": "gwb", "heartbeat_s": 2, "devices": gauges(port, n, 0.05),
                                 "uplink": {"reconnect_s": 0.2, "reconnect_max_s": 0.5, "publish_timeout_s": 2}}],
                     mqtt_port=broker.port, prefix=prefix)
    db = f"e2d_{prefix}"
    cfg = with_collector(cfg, influxdb.url, db, prefix)
    outbox = cfg.path("", "edge-gwb.outbox")
    clock = Clock()
    witness = Durable(broker.port, prefix)
    in0, dup0 = accepted(), duplicates()
    async with simulate_devices(cfg.gateways[0].devices, sources(n), clock), running(cfg):
        watch = asyncio.create_task(witness.run())
        await asyncio.wait_for(witness.subscribed.wait(), 10)
        subscribed_at = time.time()
        rt = Runtime(cfg, clock)
        agent = asyncio.create_task(edge(rt))
        await wait_for(lambda: accepted() - in0 >= 120, 20, "1.5 s of readings stored")
        # Mosquitto persists sessions only at autosave (every 1-2 s): a SIGKILL before the first save after
        # the subscriptions loses them, and with them whatever the edge publishes before the collector is back.
        await wait_for(lambda: saved_since(broker.dir / "mosquitto.db", subscribed_at), 10,
                       "the broker saved the collector's persistent session")
        await asyncio.to_thread(broker.stop, True)  # SIGKILL, with edge and collector connected
        await wait_for(lambda: len(outbox_ids(outbox)) >= 40, 20, "a backlog while the broker is down")
        await asyncio.to_thread(broker.start)
        at_restart = accepted()
        await wait_for(lambda: accepted() >= at_restart + 150, 30, "the collector reconnected and the backlog drains")
        rt.stop.set()
        await asyncio.wait_for(agent, 15)
        ids, total = await settled(influxdb, db, outbox, witness)
        watch.cancel()
    check(ids, total, outbox, witness, in0, dup0)
    assert total >= 250


async def test_sigkill_of_the_agent_mid_stream_stores_every_reading_exactly_once_in_influxdb(
        mosquitto, influxdb, prefix, tmp_path):
    port, n = free_port(), 4
    cfg = deployment(tmp_path, [{"id": "gwk", "heartbeat_s": 2, "devices": gauges(port, n, 0.05),
                                 "uplink": {"rate_per_s": 400, "batch": 20}}],
                     mqtt_port=mosquitto.port, prefix=prefix)
    db = f"e2d_{prefix}"
    ccfg = with_collector(cfg, influxdb.url, db, prefix)
    outbox = cfg.path("", "edge-gwk.outbox")
    witness = Durable(mosquitto.port, prefix)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "edge", str(tmp_path), "--log-level", "WARNING"]
    in0, dup0 = accepted(), duplicates()
    async with simulate_devices(cfg.gateways[0].devices, sources(n), Clock()), running(ccfg):
        watch = asyncio.create_task(witness.run())
        await asyncio.wait_for(witness.subscribed.wait(), 10)
        agent = subprocess.Popen(cmd, env=env, cwd=ROOT)
        try:
            await wait_for(lambda: accepted() - in0 >= 100, 20, "readings stored from the first agent")
            agent.send_signal(signal.SIGKILL)
            await asyncio.to_thread(agent.wait, 10)
            at_kill = set(outbox_ids(outbox))  # committed, not yet acknowledged: each must still be stored
            agent = subprocess.Popen(cmd, env=env, cwd=ROOT)
            count = accepted()
            await wait_for(lambda: accepted() >= count + 100, 20, "readings stored from the second agent")
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(agent.wait, 15) == 0
        finally:
            if agent.poll() is None:
                agent.kill()
        ids, total = await settled(influxdb, db, outbox, witness)
        watch.cancel()
    assert at_kill <= set(ids), "readings committed before the kill were stored after the restart"
    check(ids, total, outbox, witness, in0, dup0)
