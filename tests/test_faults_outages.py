"""Long outages while three gateways stream (issue 8), in real wall time: a 60 s broker outage, a broker
SIGKILL, a 5-minute InfluxDB outage. Three in-process edge agents → Mosquitto → the collector → InfluxDB 1.6.7.

Every test ends with the same check: every reading any agent ever committed to its outbox (the outbox's
AUTOINCREMENT high-water mark, none dropped) is in InfluxDB exactly once by id; the ids that crossed the
broker (an independent persistent subscriber) are exactly the ids stored; the collector accepted each
reading once; and every outbox drained to empty.

Marked ``long``: tests/run.sh runs them in a second lane beside the rest. The stream is modest
(3 gateways × 2 gauges × 2 readings/s) so the lane mostly waits and costs little CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import wait_for
from prometheus_client import REGISTRY
from servers import InfluxDB1, Mosquitto
from testing.collector import running
from testing.edge import Durable, outbox_ids
from testing.edge import accepted, duplicates, metric, produced, saved_since
from testing.faults import GATEWAYS, three_gateways

from collector.config import CollectorConfig, InfluxV1Store
from edge.service import serve as edge
from simulators.devices import simulate_devices
from yujing.clock import Clock
from yujing.runtime import Runtime

pytestmark = pytest.mark.long

INTERVAL_S = 0.5  # each gauge is read twice a second: 12 readings/s over the three gateways
BROKER_OUTAGE_S = 60.0
DB_OUTAGE_S = 300.0
RETRY_MAX_S = 10.0  # the collector's database retry backoff cap in the 5-minute test (default 30 s)
COLLECTOR_MQTT_BACKOFF_MAX_S = 30.0  # collector/service.py's reconnect delay cap (not configurable)


def spool_depth() -> float:
    return metric("yujing_collector_spool_readings")


def spooled() -> float:
    return metric("yujing_collector_spooled_total")


def replayed() -> float:
    return REGISTRY.get_sample_value("yujing_collector_readings_out_total", {"path": "replay"}) or 0.0


def stored_by_gateway(influx: InfluxDB1, db: str) -> dict[str, Counter[str]]:
    """Gateway → (reading id → rows holding it), over every measurement."""
    out: dict[str, Counter[str]] = {}
    res = influx.query('SELECT "id" FROM /.*/ GROUP BY "gateway"', db=db)["results"][0]
    for series in res.get("series", []):
        out.setdefault(series["tags"]["gateway"], Counter()).update(v[1] for v in series["values"])
    return out


@dataclass
class Rig:
    """Three streaming gateways, the collector, and the witness subscriber; ``finish()`` stops and checks."""

    influx: InfluxDB1
    db: str
    rt: Runtime
    witness: Durable
    outboxes: dict[str, Path]
    agents: list[asyncio.Task] = field(default_factory=list)
    subscribed_at: float = 0.0  # wall time when the collector and the witness had subscribed
    in0: float = field(default_factory=accepted)
    dup0: float = field(default_factory=duplicates)

    async def stored(self) -> dict[str, Counter[str]]:
        return await asyncio.to_thread(stored_by_gateway, self.influx, self.db)

    async def stored_ids(self) -> set[str]:
        return {i for ids in (await self.stored()).values() for i in ids}

    def backlog(self) -> set[str]:
        """Ids committed to the outboxes and not yet acknowledged by the broker."""
        return {i for p in self.outboxes.values() for i in outbox_ids(p)}

    async def every_gateway_stored(self, at_least: int, timeout_s: float, what: str) -> None:
        async def enough() -> bool:
            got = await self.stored()
            return all(len(got.get(g, ())) >= at_least for g in GATEWAYS)

        await wait_for(enough, timeout_s, f"{at_least} readings of every gateway in InfluxDB ({what})", interval_s=0.5)

    async def backlog_stored(self, backlog: set[str], timeout_s: float) -> float:
        """Wait until every id of ``backlog`` is in InfluxDB; return how long that took."""
        t0 = time.monotonic()

        async def done() -> bool:
            return backlog <= await self.stored_ids()

        try:
            await wait_for(done, timeout_s, f"the {len(backlog)} backlogged readings in InfluxDB", interval_s=0.5)
        except AssertionError as e:
            lost = backlog - await self.stored_ids()
            raise AssertionError(f"{len(lost)} of {len(backlog)} backlogged readings not stored; the witness "
                                 f"subscriber missed {len(lost - set(self.witness.arrivals))} of those") from e
        return time.monotonic() - t0

    async def finish(self) -> None:
        """Stop the agents cleanly, wait until InfluxDB holds all they produced, and check it is all once."""
        await wait_for(lambda: not self.backlog(), 15, "every outbox empty while the agents run")
        self.rt.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.agents), 15)
        left = {g: outbox_ids(p) for g, p in self.outboxes.items()}
        assert not any(left.values()), f"a clean stop with the broker up flushes every outbox: {left}"
        made = {g: produced(p) for g, p in self.outboxes.items()}
        total = sum(made.values())

        async def all_in() -> bool:
            return len(await self.stored_ids()) >= total

        await wait_for(all_in, 30, f"all {total} produced readings in InfluxDB", interval_s=0.5)
        ids = await self.stored_ids()
        await wait_for(lambda: set(self.witness.arrivals) >= ids, 10, "the witness saw every stored id")
        stored = await self.stored()
        assert {g: len(c) for g, c in stored.items()} == made, "each gateway's readings, all of them, no other"
        twice = {i: k for c in stored.values() for i, k in c.items() if k > 1}
        assert not twice, f"readings stored in more than one row: {list(twice.items())[:5]}"
        assert len(ids) == total
        assert set(self.witness.arrivals) == ids, "the ids that crossed the broker are exactly the ids stored"
        # an identical point overwrites itself in InfluxDB, so rows alone cannot show a double write: the collector
        # accepted (wrote) each reading once and skipped every redelivery
        assert accepted() - self.in0 == total, (accepted() - self.in0, total)
        print(f"produced={made} total={total} collector_duplicates_skipped={duplicates() - self.dup0:.0f} "
              f"witness_arrivals={len(self.witness.arrivals)} "
              f"witness_redeliveries={len(self.witness.arrivals) - len(set(self.witness.arrivals))}")


@contextlib.asynccontextmanager
async def streaming(tmp_path: Path, broker_port: int, influx: InfluxDB1, prefix: str,
                    **collector) -> AsyncIterator[Rig]:
    """Three gateways streaming through ``broker_port`` into a collector writing to ``influx``."""
    cfg, srcs = three_gateways(tmp_path / "edge", broker_port, prefix, n=2, interval_s=INTERVAL_S)
    db = f"out_{prefix}"
    store = InfluxV1Store(type="influxdb_v1", url=influx.url, database=db, timeout_s=2)
    ccfg = cfg.model_copy(update={"collector": CollectorConfig(store=store, client_id=f"c-{prefix}", **collector)})
    clock = Clock()
    rig = Rig(influx, db, Runtime(cfg, clock), Durable(broker_port, prefix),
              {g: cfg.path("", f"edge-{g}.outbox") for g in GATEWAYS})
    async with contextlib.AsyncExitStack() as stack:
        for gw in cfg.gateways:
            await stack.enter_async_context(simulate_devices(gw.devices, srcs, clock))
        await stack.enter_async_context(running(ccfg))
        watch = asyncio.create_task(rig.witness.run())
        stack.callback(watch.cancel)
        await asyncio.wait_for(rig.witness.subscribed.wait(), 10)
        rig.subscribed_at = time.time()
        rig.agents = [asyncio.create_task(edge(rig.rt, gateways=[g])) for g in GATEWAYS]  # one agent per gateway
        try:
            yield rig
        finally:
            rig.rt.stop.set()
            await asyncio.wait_for(asyncio.gather(*rig.agents, return_exceptions=True), 20)


@pytest.mark.timeout(300)
async def test_a_60_s_broker_outage_with_three_gateways_streaming_stores_every_reading_once_in_influxdb(
        private_server, influxdb, prefix, tmp_path):
    broker = private_server(Mosquitto)
    async with streaming(tmp_path, broker.port, influxdb, prefix) as rig:
        await rig.every_gateway_stored(10, 30, "before the outage")
        await asyncio.to_thread(broker.stop)  # a clean stop: Mosquitto saves its sessions
        down = time.monotonic()
        await wait_for(lambda: all(len(outbox_ids(p)) >= 20 for p in rig.outboxes.values()), 30,
                       "a backlog on every gateway")
        await asyncio.sleep(BROKER_OUTAGE_S - (time.monotonic() - down))  # the rest of the outage (fault schedule)
        backlog = rig.backlog()
        await asyncio.to_thread(broker.start)
        outage = time.monotonic() - down
        # the collector's reconnect delay has reached its 30 s cap during the outage
        took = await rig.backlog_stored(backlog, COLLECTOR_MQTT_BACKOFF_MAX_S + 30)
        await rig.every_gateway_stored(len(backlog) // 3 + 20, 20, "after the outage")
        await rig.finish()
    print(f"broker outage {outage:.1f} s; backlog {len(backlog)} readings stored {took:.1f} s after the restart")
    assert outage >= BROKER_OUTAGE_S
    assert len(backlog) >= 3 * 2 * 2 * BROKER_OUTAGE_S * 0.8, "every gateway kept producing through the outage"


@pytest.mark.timeout(180)
async def test_b_broker_sigkill_mid_stream_with_three_gateways_stores_every_reading_once_in_influxdb(
        private_server, influxdb, prefix, tmp_path):
    broker = private_server(Mosquitto)
    async with streaming(tmp_path, broker.port, influxdb, prefix) as rig:
        await rig.every_gateway_stored(10, 30, "before the kill")
        # Mosquitto persists sessions only at autosave (every 1-2 s): a SIGKILL before the first save after the
        # subscriptions loses them, and with them whatever the gateways publish before the collector is back.
        await wait_for(lambda: saved_since(broker.dir / "mosquitto.db", rig.subscribed_at), 10,
                       "the broker saved the collector's persistent session")
        await asyncio.to_thread(broker.stop, True)  # SIGKILL, with gateways and collector connected
        down = time.monotonic()
        await wait_for(lambda: all(len(outbox_ids(p)) >= 20 for p in rig.outboxes.values()), 30,
                       "a backlog on every gateway")
        backlog = rig.backlog()
        await asyncio.to_thread(broker.start)
        outage = time.monotonic() - down
        took = await rig.backlog_stored(backlog, COLLECTOR_MQTT_BACKOFF_MAX_S + 30)
        await rig.every_gateway_stored(len(backlog) // 3 + 40, 30, "after the restart")
        await rig.finish()
    print(f"broker killed for {outage:.1f} s; backlog {len(backlog)} readings stored {took:.1f} s after the restart")


@pytest.mark.timeout(480)
async def test_c_a_5_minute_influxdb_outage_spools_then_replays_every_reading_once_within_the_retry_cap(
        mosquitto, private_server, prefix, tmp_path):
    influx = private_server(InfluxDB1)
    async with streaming(tmp_path, mosquitto.port, influx, prefix, retry_max_s=RETRY_MAX_S) as rig:
        await rig.every_gateway_stored(10, 30, "before the outage")
        spooled0, replayed0 = spooled(), replayed()
        await asyncio.to_thread(influx.stop)
        down = time.monotonic()
        await wait_for(lambda: spool_depth() >= 100, 30, "the collector spooling")
        max_backlog = 0
        while time.monotonic() - down < DB_OUTAGE_S:  # the outage (fault schedule), watching the gateways meanwhile
            max_backlog = max(max_backlog, len(rig.backlog()))
            await asyncio.sleep(1)
        depth = spool_depth()
        assert metric("yujing_collector_db_up") == 0
        launched = time.monotonic()
        await asyncio.to_thread(influx.start)  # returns once InfluxDB answers /ping
        up = time.monotonic()
        await wait_for(lambda: spool_depth() == 0, RETRY_MAX_S + 30, "the spool replayed", interval_s=0.1)
        drained = time.monotonic() - up
        assert metric("yujing_collector_db_up") == 1
        await rig.every_gateway_stored(int(depth) // 3 + 20, 20, "after the outage")
        await rig.finish()
    print(f"database outage {launched - down:.1f} s, InfluxDB up {up - launched:.1f} s after its start; spool peaked at {depth:.0f} readings ({spooled() - spooled0:.0f} "
          f"spooled, {replayed() - replayed0:.0f} replayed); spool empty {drained:.1f} s after InfluxDB was up; "
          f"largest gateway backlog {max_backlog}")
    assert depth >= 3 * 2 * 2 * DB_OUTAGE_S * 0.8, "the spool took the whole outage's stream"
    assert spooled() - spooled0 == replayed() - replayed0 >= depth, "every spooled reading was replayed"
    # the retry backoff is capped: the first try after the database is back comes within RETRY_MAX_S (full jitter
    # in [cap/2, cap]), and one replay of a few thousand readings takes well under a second
    assert drained <= RETRY_MAX_S + 5, f"spool drained {drained:.1f} s after the database returned"
    assert max_backlog < 50, "the collector spooled and acknowledged: the gateways built no backlog"
