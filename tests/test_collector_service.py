"""The collector through real Mosquitto, InfluxDB 1.6.7 and VictoriaMetrics: readings in, stored once."""

from __future__ import annotations

from conftest import wait_for

from collector.config import InfluxV1Store, SqliteStore
from collector.stores import open_store
from testing.collector import influx_count, make_config, publish, readings, running


async def test_readings_published_one_per_message_reach_influxdb_v1_once_each(mosquitto, influxdb, prefix, tmp_path):
    db = f"db_{prefix}"
    cfg = make_config(tmp_path, mosquitto.port, prefix, InfluxV1Store(type="influxdb_v1", url=influxdb.url, database=db))
    sent = readings(300)
    async with running(cfg):
        await publish(mosquitto.port, prefix, sent)
        await wait_for(lambda: influx_count(influxdb, db) >= 300, 15, "300 readings in InfluxDB")
    async with open_store(cfg.collector.store) as store:
        got = await store.readings(site="RG-1")
    assert sorted(r.id for r in got) == sorted(r.id for r in sent)
    assert got[5] == sent[5]


async def test_edge_batches_and_single_readings_are_both_accepted_into_sqlite(mosquitto, prefix, tmp_path):
    cfg = make_config(tmp_path, mosquitto.port, prefix, SqliteStore(type="sqlite", path=str(tmp_path / "r.sqlite")))
    batch, single = readings(100, site="A"), readings(10, site="B")
    async with running(cfg):
        await publish(mosquitto.port, prefix, batch, per_message=25)
        await publish(mosquitto.port, prefix, single)
        async with open_store(cfg.collector.store, cfg) as store:
            await wait_for(lambda: _count(store) == 110, 15, "110 readings in SQLite")
            assert [r.id for r in await store.readings(site="A")] == [r.id for r in batch]


def _count(store) -> bool:
    return store._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]  # noqa: SLF001
