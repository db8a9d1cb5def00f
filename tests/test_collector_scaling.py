"""Shared subscriptions split the load; /metrics and /health report; a full spool follows its policy."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from conftest import wait_for
from prometheus_client import REGISTRY
from servers import InfluxDB1, free_port
from testing.collector import influx_count, make_config, publish, readings, running

from collector.config import InfluxV1Store, SqliteStore
from collector.stores import open_store


async def test_two_collectors_on_a_shared_subscription_split_the_stream_without_overlap(mosquitto, prefix, tmp_path):
    cfgs = [make_config(tmp_path / n, mosquitto.port, prefix, SqliteStore(type="sqlite", path=str(tmp_path / f"{n}.db")),
                        share_group="g1", flush_interval_s=0.02).model_copy() for n in ("a", "b")]
    cfgs = [c.model_copy(update={"collector": c.collector.model_copy(update={"client_id": f"{prefix}-{i}"})})
            for i, c in enumerate(cfgs)]
    sent = readings(400)
    async with running(cfgs[0]), running(cfgs[1]):
        await publish(mosquitto.port, prefix, sent)
        stores = [open_store(c.collector.store, c) for c in cfgs]
        async with stores[0] as s0, stores[1] as s1:
            async def total() -> bool:
                return len(await s0.readings()) + len(await s1.readings()) >= 400
            await wait_for(total, 15, "400 readings across both collectors")
            got0, got1 = {r.id for r in await s0.readings()}, {r.id for r in await s1.readings()}
    assert got0 and got1, "both members of the group took a share"
    assert not got0 & got1
    assert got0 | got1 == {r.id for r in sent}


async def test_metrics_and_health_endpoints_report_intake_and_database_state(mosquitto, influxdb, prefix, tmp_path):
    port = free_port()
    db = f"db_{prefix}"
    cfg = make_config(tmp_path, mosquitto.port, prefix, InfluxV1Store(type="influxdb_v1", url=influxdb.url, database=db),
                      metrics_port=port)
    async with running(cfg):
        await publish(mosquitto.port, prefix, readings(10))
        await wait_for(lambda: influx_count(influxdb, db) == 10, 15, "10 readings stored")
        text = (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")).decode()
        health = json.loads(await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/health"))
    for name in ("yujing_collector_readings_in_total", "yujing_collector_readings_out_total",
                 "yujing_collector_rejected_total", "yujing_collector_batch_readings_bucket",
                 "yujing_collector_write_seconds_bucket", "yujing_collector_spool_readings", "yujing_collector_db_up"):
        assert name in text
    assert health == {"ok": True, "db_up": True, "spool_readings": 0, "connected": True}


async def test_a_full_spool_blocks_intake_and_loses_nothing_once_the_database_returns(
        mosquitto, private_server, prefix, tmp_path):
    influx = private_server(InfluxDB1)
    cfg = make_config(tmp_path, mosquitto.port, prefix, InfluxV1Store(type="influxdb_v1", url=influx.url, database="b",
                                                                      timeout_s=1),
                      spool_max_readings=100, retry_max_s=1, batch_size=50)
    sent = readings(500)
    async with running(cfg):
        await publish(mosquitto.port, prefix, sent[:20])
        await wait_for(lambda: influx_count(influx, "b") == 20, 15, "first readings stored")
        influx.stop()
        await publish(mosquitto.port, prefix, sent[20:])
        await wait_for(lambda: (REGISTRY.get_sample_value("yujing_collector_spool_readings") or 0) >= 100, 15,
                       "the spool full")
        assert REGISTRY.get_sample_value("yujing_collector_spool_readings") < 100 + 50, "bounded: no more spooled"
        influx.start()
        await wait_for(lambda: influx_count(influx, "b") == 500, 30, "everything stored once the database is back")


async def test_drop_oldest_policy_counts_and_logs_what_a_full_spool_discards(
        mosquitto, private_server, prefix, tmp_path, caplog):
    influx = private_server(InfluxDB1)
    cfg = make_config(tmp_path, mosquitto.port, prefix, InfluxV1Store(type="influxdb_v1", url=influx.url, database="d",
                                                                      timeout_s=1),
                      spool_max_readings=100, spool_full="drop_oldest", batch_size=50, flush_interval_s=0.01)
    before = REGISTRY.get_sample_value("yujing_collector_spool_dropped_total") or 0
    influx.stop()
    async with running(cfg):
        await publish(mosquitto.port, prefix, readings(300))
        await wait_for(lambda: (REGISTRY.get_sample_value("yujing_collector_spool_dropped_total") or 0) - before >= 150,
                       15, "oldest readings dropped")
    assert REGISTRY.get_sample_value("yujing_collector_spool_readings") <= 150
    assert "spool full: dropped oldest readings" in caplog.text


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read()
