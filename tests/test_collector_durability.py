"""Nothing acknowledged is lost and nothing is stored twice: database outages, re-sends, SIGKILL.

The 2-minute outage runs on an accelerated clock (speed 12): the retry backoff is clock-driven,
so 10 real seconds of outage exercise the same backoff schedule as 2 scenario minutes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import wait_for
from prometheus_client import REGISTRY
from servers import InfluxDB1, VictoriaMetrics, free_port
from testing.collector import influx_count, make_config, publish, readings, running
from testing.collector import stream

from collector.config import InfluxV1Store, InfluxV2Store
from yujing.clock import Clock
from yujing.compose import Config
from yujing.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent


def vm_samples(vm, site: str) -> list[float]:
    """Every stored sample's timestamp for one site (duplicates included: VictoriaMetrics keeps them)."""
    out: list[float] = []
    for series in vm.export(f'{{__name__="rain_mm_value",site="{site}"}}'):
        out.extend(series["timestamps"])
    return out


async def test_influxdb_down_for_10_s_mid_stream_every_reading_arrives_once(mosquitto, private_server, prefix, tmp_path):
    influx = private_server(InfluxDB1)
    db = "outage"
    cfg = make_config(tmp_path, mosquitto.port, prefix, InfluxV1Store(type="influxdb_v1", url=influx.url, database=db,
                                                                      timeout_s=2), retry_max_s=2)
    sent = readings(3000)
    spooled = REGISTRY.get_sample_value("yujing_collector_spooled_total") or 0
    async with running(cfg):
        publisher = asyncio.create_task(stream(mosquitto.port, prefix, sent, 200))
        await wait_for(lambda: influx_count(influx, db) > 200, 15, "stream under way")
        influx.stop()
        down_at = time.monotonic()
        await asyncio.sleep(10)  # the outage itself
        influx.start()
        await publisher
        await wait_for(lambda: influx_count(influx, db) == len(sent), 30, "every reading stored after the outage")
    assert time.monotonic() - down_at > 10
    assert (REGISTRY.get_sample_value("yujing_collector_spooled_total") or 0) > spooled, "the outage was spooled"
    assert REGISTRY.get_sample_value("yujing_collector_spool_readings") == 0
    got = influx.query('SELECT "id" FROM "rain_mm"', db=db)["results"][0]["series"][0]["values"]
    assert sorted(v[1] for v in got) == sorted(r.id for r in sent)


async def test_victoria_down_for_2_scenario_minutes_replays_the_spool_in_order_exactly_once(
        mosquitto, private_server, prefix, tmp_path):
    vm = private_server(VictoriaMetrics)
    site = f"s-{prefix}"[:60]
    cfg = make_config(tmp_path, mosquitto.port, prefix, InfluxV2Store(type="influxdb_v2", url=vm.url, timeout_s=2))
    rt_clock = Clock(speed=12)  # 10 real seconds = 2 scenario minutes; backoff up to 30 scenario s = 2.5 real s
    sent = readings(3000, site=site)
    rt = Runtime(cfg, clock=rt_clock)
    from collector.service import serve

    task = asyncio.create_task(serve(rt))
    try:
        await wait_for(lambda: _subscribed(cfg), 10, "collector subscribed")
        publisher = asyncio.create_task(stream(mosquitto.port, prefix, sent, 200))
        await wait_for(lambda: len(vm_samples(vm, site)) > 200, 15, "stream under way")
        vm.stop()
        await asyncio.sleep(10)
        vm.start()
        await publisher
        await wait_for(lambda: len(vm_samples(vm, site)) >= len(sent), 40, "every reading stored after the outage")
    finally:
        rt.stop.set()
        await asyncio.wait_for(task, 30)
    stamps = vm_samples(vm, site)
    assert len(stamps) == len(sent), "no reading stored twice (VictoriaMetrics keeps duplicates)"
    assert sorted(stamps) == sorted(int(r.ts.timestamp() * 1000) for r in sent)


def _subscribed(cfg: Config) -> bool:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("yujing_collector_mqtt_subscribed", {"client_id": cfg.collector.client_id}) == 1


async def test_resent_readings_are_stored_once_in_victoriametrics(mosquitto, victoria, prefix, tmp_path):
    site = f"d-{prefix}"[:60]
    cfg = make_config(tmp_path, mosquitto.port, prefix, InfluxV2Store(type="influxdb_v2", url=victoria.url))
    sent = readings(200, site=site)
    async with running(cfg):
        await publish(mosquitto.port, prefix, sent, per_message=10)
        await publish(mosquitto.port, prefix, sent[50:150])  # the edge outbox re-sends after a reconnect
        await wait_for(lambda: len(vm_samples(victoria, site)) >= 200, 15, "200 readings in VictoriaMetrics")
        await asyncio.sleep(0.3)  # a duplicate would land within one flush interval of the rest
    assert len(vm_samples(victoria, site)) == 200
    # and after a restart the spool's memory of seen ids still holds
    async with running(cfg):
        await publish(mosquitto.port, prefix, sent[:20])
        await publish(mosquitto.port, prefix, readings(1, site=site, start=500))  # a marker behind them
        await wait_for(lambda: len(vm_samples(victoria, site)) >= 201, 15, "the marker stored")
    assert len(vm_samples(victoria, site)) == 201


RUNNER = """
import asyncio, sys
sys.path.insert(0, {root!r})
from yujing.compose import Config
from collector.service import serve
from yujing.runtime import Runtime
cfg = Config.model_validate_json(open(sys.argv[1]).read())
asyncio.run(serve(Runtime(cfg)))
"""


def subscribed(metrics_port: int) -> bool:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
    except OSError:
        return False
    return any(line.startswith("yujing_collector_mqtt_subscribed{") and line.endswith(" 1.0")
               for line in text.splitlines())


def start_collector(tmp_path: Path, cfg: Config) -> subprocess.Popen:
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    (tmp_path / "run.py").write_text(RUNNER.format(root=str(ROOT)))
    return subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "cfg.json")],
                            stdout=open(tmp_path / "collector.log", "ab"), stderr=subprocess.STDOUT)


async def test_sigkill_mid_stream_and_restart_loses_nothing_and_stores_nothing_twice(
        mosquitto, victoria, prefix, tmp_path):
    site = f"k-{prefix}"[:60]
    metrics = free_port()
    cfg = make_config(tmp_path, mosquitto.port, prefix, InfluxV2Store(type="influxdb_v2", url=victoria.url),
                      metrics_port=metrics)
    sent = readings(6000, site=site)
    proc = start_collector(tmp_path, cfg)
    try:
        # Its persistent session holds readings for it only once it has subscribed: stream after that.
        await wait_for(lambda: subscribed(metrics), 30, "the collector subscribed")
        publisher = asyncio.create_task(stream(mosquitto.port, prefix, sent, 1000))
        await wait_for(lambda: len(vm_samples(victoria, site)) > 1000, 20, "stream under way")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        await asyncio.sleep(0.5)
        proc = start_collector(tmp_path, cfg)
        await publisher
        await wait_for(lambda: len(vm_samples(victoria, site)) >= len(sent), 30, "every reading stored")
        await asyncio.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM) if proc.poll() is None else None
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    stamps = vm_samples(victoria, site)
    assert len(stamps) == len(sent)
    assert sorted(stamps) == sorted(int(r.ts.timestamp() * 1000) for r in sent)


async def test_a_queued_backlog_many_times_the_receive_window_drains_completely(mosquitto, influxdb, prefix, tmp_path):
    """The broker sends a session's queued messages right after CONNACK, in the same reads: each must be
    acknowledged like any other, or the receive window stays full and the rest of the backlog never comes."""
    db = f"db_{prefix}"
    cfg = make_config(tmp_path, mosquitto.port, prefix, InfluxV1Store(type="influxdb_v1", url=influxdb.url, database=db),
                      receive_maximum=5)
    async with running(cfg):
        pass  # the persistent session now exists
    sent = readings(600)
    await publish(mosquitto.port, prefix, sent)  # queued while the collector is away
    async with running(cfg):
        await wait_for(lambda: influx_count(influxdb, db) == len(sent), 30, "the whole backlog stored")
