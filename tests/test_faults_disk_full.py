"""Disk full under the collector's spool and the edge's outbox (real tmpfs mounts, real servers).

Nothing acknowledged is lost and nothing is stored twice: the collector does not PUBACK what its full
spool could not take (the broker keeps it and it arrives later); the edge agent keeps running, holds
what its full outbox refuses (bounded, in memory) and stores it once there is room. Every loss that a
bound forces is counted (metric), logged once, and reported for an equipment warning: the gateway's
heartbeat ``outbox_dropped``, the collector's retained ``{prefix}/loss/collector-<client_id>``.

Needs root (``mount -t tmpfs``), as in CI; skipped otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from pathlib import Path

import aiomqtt
import pytest
from conftest import wait_for
from prometheus_client import REGISTRY
from servers import InfluxDB1, free_port
from test_collector_durability import stream
from test_collector_service import influx_count, make_config, publish, readings, running

from collector.config import InfluxV1Store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path):
    """``small_disk("spool", "1m")``: a directory on a tmpfs of that size, unmounted after the test."""
    mounts: list[Path] = []

    def make(name: str, size: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
        mounts.append(path)
        return path

    yield make
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], check=False)


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def written() -> float:
    """Readings the collector has written to the database, direct or replayed (duplicates counted twice)."""
    return sum(metric("yujing_collector_readings_out_total", {"path": p}) for p in ("direct", "replay"))


def stored_ids(influx, db: str) -> list[str]:
    res = influx.query('SELECT "id" FROM "rain_mm"', db=db)["results"][0]
    return [v[1] for v in res["series"][0]["values"]] if res.get("series") else []


async def _spool_disk_full(mosquitto, private_server, prefix, tmp_path, small_disk, caplog, free_space: bool):
    """Database down, stream until the spool's disk is full; then free space (or not) and bring the database back."""
    disk = small_disk("spool", "1m")
    filler = disk / "filler"
    filler.write_bytes(b"\0" * 300_000)  # what an operator deletes to make room
    influx = private_server(InfluxDB1)
    db, sent = "full", readings(12_000)
    cfg = make_config(tmp_path, mosquitto.port, prefix,
                      InfluxV1Store(type="influxdb_v1", url=influx.url, database=db, timeout_s=2),
                      spool=str(disk / "collector.spool"), retry_initial_s=0.2, retry_max_s=1)
    out0, refused0 = written(), metric("yujing_collector_spool_unwritable_total")
    caplog.set_level(logging.INFO, "yujing.collector")
    async with running(cfg) as rt:
        await publish(mosquitto.port, prefix, sent[:100])
        await wait_for(lambda: influx_count(influx, db) == 100, 15, "the first readings stored")
        await asyncio.to_thread(influx.stop)
        publisher = asyncio.create_task(stream(mosquitto.port, prefix, sent[100:], 3000))
        await wait_for(lambda: metric("yujing_collector_spool_unwritable_total") > refused0, 30, "the spool's disk full")
        assert metric("yujing_collector_spool_writable") == 0
        await publisher  # the broker has every reading; the collector has acknowledged only what is durable
        await wait_for(lambda: metric("yujing_collector_spool_unwritable_total") >= refused0 + 3, 15,
                       "retries refused too (and survived)")
        depth = metric("yujing_collector_spool_readings")
        assert 0 < depth < len(sent) - 100, "part of the stream is still with the broker, unacknowledged"
        assert caplog.text.count("spool cannot be written") == 1, "logged once, not per retry"
        if free_space:
            filler.unlink()
            await wait_for(lambda: "spool writable again" in caplog.text, 15, "the spool writable again")
        await asyncio.to_thread(influx.start)
        await wait_for(lambda: influx_count(influx, db) == len(sent), 60, "every reading stored once the database is back")
        await wait_for(lambda: metric("yujing_collector_spool_readings") == 0, 15, "the spool drained")
        assert not rt.stop.is_set()
    assert sorted(stored_ids(influx, db)) == sorted(r.id for r in sent)
    assert written() - out0 == len(sent), "each reading written to the database exactly once"


@pytest.mark.timeout(150)
async def test_a_full_spool_disk_with_the_database_down_acknowledges_nothing_it_cannot_keep_and_resumes_when_space_returns(
        mosquitto, private_server, prefix, tmp_path, small_disk, caplog):
    await _spool_disk_full(mosquitto, private_server, prefix, tmp_path, small_disk, caplog, free_space=True)


@pytest.mark.timeout(150)
async def test_a_full_spool_disk_drains_once_the_database_is_back_though_the_disk_stays_full(
        mosquitto, private_server, prefix, tmp_path, small_disk, caplog):
    await _spool_disk_full(mosquitto, private_server, prefix, tmp_path, small_disk, caplog, free_space=False)


async def retained(port: int, topic: str, pred, timeout_s: float = 15.0) -> dict:
    """The retained message on ``topic`` once ``pred(payload)`` holds (fresh subscriptions until then)."""
    last: dict = {}

    async def latest() -> bool:
        nonlocal last
        async with aiomqtt.Client("127.0.0.1", port) as c:
            await c.subscribe(topic, qos=1)
            try:
                async with asyncio.timeout(1.0):
                    async for msg in c.messages:
                        if msg.retain:
                            last = json.loads(msg.payload)
                        break
            except TimeoutError:
                pass
        return bool(last) and pred(last)

    await wait_for(latest, timeout_s, f"retained {topic} matching ({last})")
    return last


# Remove this mark with the two LossReport lines in collector/service.py (it publishes over that client).
@pytest.mark.xfail(strict=True, reason="collector/service.py does not yet pass a LossReport to the Sink")
@pytest.mark.timeout(90)
async def test_a_spool_bound_forcing_drops_publishes_a_retained_cumulative_loss_report(
        mosquitto, prefix, tmp_path, caplog):
    down = InfluxV1Store(type="influxdb_v1", url=f"http://127.0.0.1:{free_port()}", database="x", timeout_s=1)
    cfg = make_config(tmp_path, mosquitto.port, prefix, down, spool_max_readings=100, spool_full="drop_oldest",
                      batch_size=20, flush_interval_s=0.01, retry_max_s=1)
    topic = f"{prefix}/loss/collector-{cfg.collector.client_id}"
    dropped0 = metric("yujing_collector_spool_dropped_total")
    total = published = 0
    for run, n in enumerate((400, 200)):  # the count survives a restart (kept in the spool file)
        spooled0 = metric("yujing_collector_spooled_total")
        async with running(cfg):
            await publish(mosquitto.port, prefix, readings(n, start=run * 1000), per_message=10)
            published += n
            # every reading is now spooled or dropped; the spool holds about its bound
            await wait_for(lambda s0=spooled0, k=n: metric("yujing_collector_spooled_total") - s0 >= k, 15,
                           "all readings taken")
            depth = metric("yujing_collector_spool_readings")
            assert 100 <= depth <= 120
            total = int(metric("yujing_collector_spool_dropped_total") - dropped0)
            assert total == published - depth
            report = await retained(mosquitto.port, topic, lambda p, t=total: p["dropped"] == t)
    assert report["component"] == f"collector-{cfg.collector.client_id}"
    assert report["reason"] == "spool-full"
    assert report["ts"].endswith("+00:00")
    assert total >= 450
    assert caplog.text.count("spool full: dropped oldest readings") <= 2, "logged once per run, not per batch"
