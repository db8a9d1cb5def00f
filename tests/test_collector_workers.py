"""`yujing collector` as worker processes on a shared subscription (collector/workers.py): the load is shared,
a killed worker loses nothing and is started again, one port shows every worker, SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from conftest import terminate, wait_for
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port
from testing.broker import session_present
from testing.collector import influx_count, publish, readings, stream

from collector.workers import usable_cores, worker_count
from yujing.clock import Clock
from yujing.compose import load_config
from yujing.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Running:
    proc: asyncio.subprocess.Process
    port: int
    log: Path

    def health(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def metric(self, name: str) -> dict[str, float]:
        """A sample's value by its worker label (summed over other labels)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name:
                    k = s.labels.get("worker", "")
                    out[k] = out.get(k, 0.0) + s.value
        return out

    def worker_pid(self, k: int) -> int:
        return next(w["pid"] for w in self.health()[1]["workers"] if w["worker"] == k)


def write_config(tmp_path: Path, mqtt_port: int, prefix: str, influx_url: str, db: str, workers: object,
                 metrics_port: int) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(
        f"deployment: {{name: {prefix}, data_dir: \"{tmp_path / 'var'}\"}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {mqtt_port}, topic_prefix: {prefix}}}\n"
        "collector:\n"
        f"  store: {{type: influxdb_v1, url: \"{influx_url}\", database: {db}}}\n"
        f"  client_id: c-{prefix}\n"
        f"  workers: {workers}\n"
        f"  metrics_port: {metrics_port}\n"
        "  flush_interval_s: 0.02\n")
    return path


@contextlib.asynccontextmanager
async def collector(tmp_path: Path, mosquitto, influxdb, prefix: str, db: str,
                    workers: object) -> AsyncIterator[Running]:
    """`yujing collector CONFIG` as an operator starts it; on leaving, SIGTERM and a clean exit (code 0)."""
    port = free_port()
    cfg = write_config(tmp_path, mosquitto.port, prefix, influxdb.url, db, workers, port)
    log = tmp_path / f"collector-{os.urandom(3).hex()}.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(log, "wb") as err:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "yujing", "collector", str(cfg),
                                                    stderr=err, env=env, cwd=ROOT)
    ready = "all collector workers subscribed" if workers != 1 else "collector subscribed"
    running = Running(proc, port, log)
    try:
        await wait_for(lambda: proc.returncode is not None or ready in log.read_text(), 60, ready)
        assert proc.returncode is None, log.read_text()
        yield running
    finally:
        await terminate(proc, 40)
    assert proc.returncode == 0, log.read_text()[-3000:]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def quiet(count, what: str, still_s: float = 1.5, timeout_s: float = 30) -> int:
    """Wait until ``count()`` is non-zero and has not changed for ``still_s``; return it."""
    loop = asyncio.get_running_loop()
    last, since = -1, loop.time()

    def settled() -> bool:
        nonlocal last, since
        now = count()
        if now != last:
            last, since = now, loop.time()
        return now > 0 and loop.time() - since >= still_s

    await wait_for(settled, timeout_s, what, interval_s=0.1)
    return last


async def test_two_workers_share_the_load_on_one_metrics_port_and_sigterm_stops_both(
        mosquitto, influxdb, prefix, tmp_path):
    db = f"db_{prefix}"
    influxdb.create_db(db)
    sent = readings(2000)
    async with collector(tmp_path, mosquitto, influxdb, prefix, db, 2) as c:
        status, health = c.health()
        assert status == 200 and health["ok"] and [w["worker"] for w in health["workers"]] == [1, 2]
        pids = [w["pid"] for w in health["workers"]]
        await publish(mosquitto.port, prefix, sent)
        await wait_for(lambda: influx_count(influxdb, db) == len(sent), 30, "every reading stored")
        await wait_for(lambda: sum(c.metric("yujing_collector_readings_out_total").values()) == len(sent), 10,
                       "the workers' counters caught up")
        taken = c.metric("yujing_collector_readings_in_total")
        subscribed = c.metric("yujing_collector_mqtt_subscribed")
        assert c.metric("yujing_collector_workers_up") == {"": 2.0}
    assert set(taken) == {"1", "2"} and all(v > 0 for v in taken.values()), taken  # both took a share
    assert sum(taken.values()) == len(sent)
    assert subscribed == {"1": 1.0, "2": 1.0}
    assert not [p for p in pids if alive(p)], "SIGTERM to the parent stopped every worker"
    text = c.log.read_text()
    assert text.count("collector subscribed") == 2 and "worker=2" in text


async def test_a_worker_killed_mid_stream_loses_nothing_and_is_started_again(mosquitto, influxdb, prefix, tmp_path):
    db = f"db_{prefix}"
    influxdb.create_db(db)
    sent = readings(4000)
    async with collector(tmp_path, mosquitto, influxdb, prefix, db, 2) as c:
        victim = c.worker_pid(2)
        publisher = asyncio.create_task(stream(mosquitto.port, prefix, sent, 500))
        await wait_for(lambda: influx_count(influxdb, db) > 500, 30, "the stream under way")
        os.kill(victim, signal.SIGKILL)
        await wait_for(lambda: c.health()[0] == 503, 10, "/health says a worker is down")
        await publisher
        await wait_for(lambda: influx_count(influxdb, db) == len(sent), 60, "every reading stored")
        await wait_for(lambda: c.health()[0] == 200, 30, "the worker back and healthy")
        assert c.worker_pid(2) != victim
        assert c.metric("yujing_collector_worker_restarts_total") == {"1": 0.0, "2": 1.0}
        assert c.metric("yujing_collector_readings_in_total").get("2", 0) > 0, "the new worker 2 took its share"
    got = influxdb.query('SELECT "id" FROM "rain_mm"', db=db)["results"][0]["series"][0]["values"]
    assert sorted(v[1] for v in got) == sorted(r.id for r in sent)
    exits = [line for line in c.log.read_text().splitlines() if "collector worker exited" in line]
    assert len(exits) == 1 and "SIGKILL" in exits[0] and "worker=2" in exits[0], exits


async def test_a_restarted_worker_gets_the_messages_queued_for_its_session(mosquitto, influxdb, prefix, tmp_path):
    db = f"db_{prefix}"
    influxdb.create_db(db)
    sent = readings(600)
    async with collector(tmp_path, mosquitto, influxdb, prefix, db, 2) as c:
        victim = c.worker_pid(2)
        os.kill(c.proc.pid, signal.SIGSTOP)  # the supervisor cannot start it again until we say
        try:
            os.kill(victim, signal.SIGKILL)
            await wait_for(lambda: not alive(victim), 10, "worker 2 gone")
            await publish(mosquitto.port, prefix, sent)
            while_down = await quiet(lambda: influx_count(influxdb, db), "worker 1's share stored")
        finally:
            os.kill(c.proc.pid, signal.SIGCONT)
        assert 0 < while_down < len(sent), "the broker kept the absent worker's share in its session"
        await wait_for(lambda: influx_count(influxdb, db) == len(sent), 60, "worker 2's share stored once it is back")
        assert c.metric("yujing_collector_readings_in_total")["2"] == len(sent) - while_down


async def test_switching_from_one_process_to_workers_keeps_the_session_and_splits_the_load(
        mosquitto, influxdb, prefix, tmp_path):
    db = f"db_{prefix}"
    influxdb.create_db(db)
    early, later = readings(200), readings(1000, start=200)
    async with collector(tmp_path, mosquitto, influxdb, prefix, db, 1):
        pass  # the configured client id now has a persistent session on the plain readings filter
    await publish(mosquitto.port, prefix, early)  # queued for that session while nothing runs
    async with collector(tmp_path, mosquitto, influxdb, prefix, db, 2) as c:
        await wait_for(lambda: influx_count(influxdb, db) == len(early), 30, "what the old session held, stored")
        await publish(mosquitto.port, prefix, later)
        await wait_for(lambda: influx_count(influxdb, db) == len(early) + len(later), 30, "every reading stored")
        taken = c.metric("yujing_collector_readings_in_total")
        duplicates = c.metric("yujing_collector_duplicates_total")
    # worker 1 dropped the old plain filter: it does not receive every message a second time beside its share
    assert sum(duplicates.values()) == 0, duplicates
    assert taken["2"] > 0 and sum(taken.values()) == len(early) + len(later)


async def test_fewer_workers_than_before_retire_the_others_sessions_and_lose_nothing(
        mosquitto, influxdb, prefix, tmp_path):
    db = f"db_{prefix}"
    influxdb.create_db(db)
    early, later = readings(600), readings(1000, start=600)
    async with collector(tmp_path, mosquitto, influxdb, prefix, db, 2):
        pass  # two persistent sessions on the shared filter, two spool files
    await publish(mosquitto.port, prefix, early)  # dealt out between the two absent sessions
    async with collector(tmp_path, mosquitto, influxdb, prefix, db, 1) as c:
        await wait_for(lambda: influx_count(influxdb, db) == len(early), 30, "both sessions' shares stored")
        await wait_for(lambda: "collector session retired" in c.log.read_text(), 30, "worker 2 retired")
        # the broker deals worker 2 no share any more: every new reading reaches the one collector
        await publish(mosquitto.port, prefix, later)
        await wait_for(lambda: influx_count(influxdb, db) == len(early) + len(later), 30, "every later reading stored")
    assert not list((tmp_path / "var").glob("collector-w2.spool*")), "the retired worker's spool is removed"
    assert not session_present(mosquitto.port, f"c-{prefix}-w2"), "the broker forgot the retired session"
    assert session_present(mosquitto.port, f"c-{prefix}")  # (the check itself: the kept one is there)
    got = influxdb.query('SELECT "id" FROM "rain_mm"', db=db)["results"][0]["series"][0]["values"]
    assert sorted(v[1] for v in got) == sorted(r.id for r in early + later)


async def test_a_spool_left_by_an_earlier_runs_worker_is_stored_by_its_retirement(
        mosquitto, influxdb, prefix, tmp_path):
    from collector.spool import Spool

    db = f"db_{prefix}"
    influxdb.create_db(db)
    held = readings(300, site="RG-9")
    (tmp_path / "var").mkdir()
    spool = Spool(tmp_path / "var" / "collector-w3.spool")  # worker 3 spooled these while InfluxDB was down
    spool.put(held[:200], 0.0)
    spool.put(held[200:], 0.0)
    spool.close()
    async with collector(tmp_path, mosquitto, influxdb, prefix, db, 2) as c:
        await wait_for(lambda: influx_count(influxdb, db) == len(held), 30, "worker 3's spool stored")
        await wait_for(lambda: "collector session retired" in c.log.read_text(), 30, "worker 3 retired")
        assert c.health()[0] == 200 and [w["worker"] for w in c.health()[1]["workers"]] == [1, 2]
    assert not list((tmp_path / "var").glob("collector-w3.spool*"))
    text = c.log.read_text()
    assert "retiring their sessions and spools" in text and "retiring=3" in text
    assert "collector worker exited" not in text  # it ended as it should: not restarted


async def check(path: Path) -> tuple[int, str]:
    """`yujing check PATH`: its exit code and stderr."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "yujing", "check", str(path),
                                                stderr=asyncio.subprocess.PIPE, env=env)
    _, err = await proc.communicate()
    return proc.returncode, err.decode()


async def test_worker_count_errors_name_the_file_line_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    cases = {
        "workers: 0": "'auto' or a number of processes from 1 to 256",
        "workers: many": "'auto' or a number of processes",
        "store: {type: sqlite}\n  workers: 2": "a SQLite store has one writer",
    }
    for body, why in cases.items():
        path.write_text("mqtt: {embedded: false}\ncollector:\n  " + body + "\n")
        code, err = await check(path)
        line = body.count("\n") + 3
        assert code == 2 and f"{path}:{line}: collector.workers: " in err and why in err, err
    path.write_text("mqtt: {embedded: true}\ncollector:\n  store: {type: influxdb_v1}\n  workers: 2\n")
    code, err = await check(path)
    assert code == 2 and f"{path}:4: collector.workers: the embedded broker" in err, err


def test_auto_means_a_worker_per_core_only_where_workers_can_run(tmp_path):
    def count(yaml: str, clock: Clock | None = None, hook: object = None) -> int:
        path = tmp_path / "c.yaml"
        path.write_text(yaml)
        return worker_count(Runtime(load_config(path), clock or Clock()), hook)

    influx = "mqtt: {embedded: false}\ncollector: {store: {type: influxdb_v1}}\n"
    assert count(influx) == usable_cores()
    assert count("mqtt: {embedded: false}\ncollector: {store: {type: influxdb_v1}, workers: 3}\n") == 3
    assert count("mqtt: {embedded: false}\ncollector: {store: {type: sqlite}}\n") == 1  # one writer
    assert count("mqtt: {embedded: true}\ncollector: {store: {type: influxdb_v1}}\n") == 1  # the demo's broker
    assert count(influx, clock=Clock(speed=60)) == 1  # a drill's scenario clock lives in one process
    assert count(influx, hook=lambda readings: None) == 1  # an in-process hook


def test_yujing_run_and_yujing_collector_start_the_collector_through_its_supervisor():
    from collector import workers
    from yujing.stack import serve_of

    assert serve_of("collector") is workers.serve  # which runs it in-process when one worker is meant (above)
