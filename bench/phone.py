"""Reading to phone: from the publish of the reading that crosses a threshold to the first SMS request.

    python bench/phone.py [--mode both|run|parts] [--trials 100] [--store influxdb|sqlite] [--rate 1000] [--wait-s S]

Starts a private Mosquitto and the Twilio stand-in (its own process, as Twilio is), writes a deployment of
``--sites`` reservoirs (flood limit 312 m) with one monitor each, and runs Yujing on it either as
``yujing run`` (every part in one process) or as ``yujing collector``, ``yujing rules`` and ``yujing alerts``
each in its own process. No edge agent: this process publishes ReadingBatch messages on
``{prefix}/readings/{gateway}`` at QoS 1 as its 20 configured gateways would (one gauge per reservoir), ``--rate`` readings/s of background (levels below
every threshold), and, one trial at a time, a single reading of a fresh reservoir at 312.5 m (blue). The figure
is the stand-in's wall-clock stamp of the first SMS to that reservoir's monitor minus the wall-clock time just
before the triggering publish, p50/p99 over ``--trials``.

The background goes through the collector in both modes, into ``--store`` (default InfluxDB 1.x, as a county
deploys it, so ``collector.workers: auto`` runs a worker process per core; ``sqlite``: one process): the JSON says
how many of the readings published the collector stored, and the CPU of every Yujing process (workers
included). Per trial, the time is split at each hop from stamps taken on the way (``hops_ms``, p50/p99 each):

- ``publish_to_warning_on_broker``: the reading through Mosquitto to the rules, evaluated, the state and the
  warning saved (SQLite), the warning published back (seen by this process's subscription to the warnings);
- ``warning_on_broker_to_alerts_received``: to the alerts' subscription, the warning recorded in the
  notification log (its ``received_at``). This and the step before end at two deliveries of one message by the
  broker (to this process and to the alerts), so it can be below zero when this process's loop is the later;
- ``alerts_received_to_claimed``: grouped, routed, rendered, the notifications 'queued' in the log, a sender
  worker takes the first and claims it ('sending', committed: ``sending_at``);
- ``claimed_to_sms_at_standin``: the Twilio SDK's request over loopback HTTP to the stand-in's stamp.

The hops are stamped by different processes' wall clocks on one machine; each is a difference of stamps, so
they add up to the total. ``floor_one_broker_hop_ms`` is one QoS 1 message through the broker back to this
process at the same moments: what the machine's load alone costs per hop.

``--wait-s`` sets ``alerts.grouping.wait_s`` (the hold of a new group to gather a site's other sensors; a site
with one device, as here, is sent at once whatever it is). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import aiohttp  # noqa: E402
import aiomqtt  # noqa: E402
import yaml  # noqa: E402
from servers import InfluxDB1, Mosquitto, free_port  # noqa: E402

from yujing.model import Reading, ReadingBatch, new_id  # noqa: E402
from yujing.mqtt import NO_DELAY  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
ACCOUNT = "AC" + "0" * 32
GATEWAYS = 20
PREFIX = "phone"


def monitor(i: int) -> str:
    return f"+86139{i:08d}"


def write_deployment(d: Path, *, mqtt_port: int, twilio_url: str, sites: int, wait_s: float | None,
                     data_dir: Path | None = None, influx_url: str | None = None) -> None:
    alerts: dict = {"twilio": {"base_url": twilio_url, "account_sid": ACCOUNT, "from_number": "+8610000000",
                               "auth_token": {"env": "PHONE_TWILIO_TOKEN"}},
                    "webhook": {"host": "127.0.0.1", "port": 0}, "client_id": f"{PREFIX}-alerts",
                    "metrics_port": 0}
    if wait_s is not None:
        alerts["grouping"] = {"wait_s": wait_s}
    doc = {
        "deployment": {"name": "phone", "data_dir": str(data_dir or d / "var")},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "topic_prefix": PREFIX},
        "collector": {"store": {"type": "influxdb_v1", "url": influx_url, "database": PREFIX} if influx_url
                      else {"type": "sqlite"}, "client_id": f"{PREFIX}-collector", "metrics_port": 0},
        "rules": {"metrics_port": 0},
        "alerts": alerts,
        "duty": {"port": 0, "client_id": f"{PREFIX}-duty"},
        "areas": [{"id": "cq", "name": "重庆市", "tier": "city"},
                  {"id": "zx", "name": "忠县", "tier": "county", "parent": "cq"},
                  {"id": "zz", "name": "忠州街道", "tier": "township", "parent": "zx"},
                  {"id": "ss", "name": "双水村", "tier": "village", "parent": "zz"}],
        "sites": [{"id": f"SK-{i}", "name": f"水库{i}", "kind": "reservoir", "area": "ss",
                   "thresholds": {"reservoir": {"flood_limit_m": 312.0, "design_flood_m": 314.0}},
                   "people": [{"name": f"监测员{i}", "role": "monitor", "phone": monitor(i)}]}
                  for i in range(sites)],
        # one level gauge per reservoir (an MQTT-native device, so `yujing run`'s edge only listens for it)
        "gateways": [{"id": f"gw-{g}", "devices": [
            {"id": f"sk-{i}", "type": "mqtt", "site": f"SK-{i}", "topic": f"vendor/level/{i}",
             "broker": {"host": "127.0.0.1", "port": mqtt_port},
             "fields": [{"quantity": "level_m", "value": "v", "unit": "m"}]}
            for i in range(g, sites, GATEWAYS)]} for g in range(GATEWAYS)],
    }
    (d / "deployment.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def batch(gw: int, site_values: list[tuple[int, float]]) -> bytes:
    now = datetime.now(UTC)
    return ReadingBatch(gateway=f"gw-{gw}", readings=[
        Reading(id=new_id(), site=f"SK-{i}", sensor=f"sk-{i}", quantity="level_m", value=v, unit="m", ts=now,
                gateway=f"gw-{gw}") for i, v in site_values]).model_dump_json().encode()


async def background(client: aiomqtt.Client, rate: float, sites: range, stop: asyncio.Event) -> int:
    """``rate`` readings/s below every threshold, as GATEWAYS gateways each sending a batch every 100 ms, each
    of its own gauges only (the collector and the rules refuse a reading a gateway has no device for)."""
    per_batch = max(1, round(rate / 10 / GATEWAYS))
    own = [[i for i in sites if i % GATEWAYS == gw] for gw in range(GATEWAYS)]
    sent, k, t0 = 0, 0, time.monotonic()
    tick = 0
    while not stop.is_set():
        for gw in range(GATEWAYS):
            vals = [(own[gw][(k + j) % len(own[gw])], 310.0 + 0.001 * (k % 100)) for j in range(per_batch)]
            await client.publish(f"{PREFIX}/readings/gw-{gw}", batch(gw, vals), qos=1)
            sent += per_batch
        k += per_batch
        tick += 1
        delay = t0 + tick * 0.1 - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
    return sent


async def first_sms(http: aiohttp.ClientSession, url: str, to: str, seen: list[int], timeout_s: float) -> float:
    """Poll the stand-in's records until an SMS to ``to`` shows; its creation stamp (wall time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with http.get(f"{url}/_standin/records", params={"sms": seen[0], "calls": 0}) as r:
            doc = await r.json()
        seen[0] += len(doc["messages"])
        hits = [m["created"] for m in doc["messages"] if m["to"] == to]
        if hits:
            return min(hits)
        await asyncio.sleep(0.005)
    raise TimeoutError(f"no SMS to {to} within {timeout_s} s")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def start_parts(mode: str, d: Path, env: dict[str, str]) -> list[subprocess.Popen]:
    cmds = [["run"]] if mode == "run" else [["collector"], ["rules"], ["alerts"]]
    log = open(d / f"{mode}.log", "ab")  # noqa: SIM115  closed with the processes
    return [subprocess.Popen([sys.executable, "-m", "yujing", "--log-level", "WARNING", *c, str(d)], cwd=ROOT,
                             env=env, stdout=log, stderr=subprocess.STDOUT) for c in cmds]


def cpu_s(roots: list[int]) -> float:
    """User + system CPU seconds of ``roots`` and every process below them (the collector's workers)."""
    stat: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu s)
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                f = (p / "stat").read_text().rsplit(")", 1)[1].split()
                stat[int(p.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"))
    tree, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo += [c for c, (parent, _) in stat.items() if parent == pid]
    return sum(stat[p][1] for p in tree if p in stat)


def stamp(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def alerts_stamps(data_dir: Path) -> dict[str, tuple[float | None, float | None]]:
    """Per site: when the alerts took its first warning and claimed its first SMS (wall time; the pipeline
    stamps the warning's record and its notifications' ``created_at`` with the one time it started at)."""
    db = sqlite3.connect(f"file:{data_dir / 'alerts.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT w.payload, w.received_at, MIN(n.sending_at) FROM warnings w"
                          " JOIN notifications n ON n.warning_id = w.id AND n.channel = 'sms'"
                          " GROUP BY w.id ORDER BY w.received_at").fetchall()
    finally:
        db.close()
    out: dict[str, tuple[float | None, float | None]] = {}
    for payload, received, claimed in rows:
        out.setdefault(json.loads(payload)["site"], (stamp(received), stamp(claimed)))
    return out


def stored(data_dir: Path, influx: InfluxDB1 | None, probe: bool = False) -> int:
    """Readings the collector has stored: the readiness probe's (SK-0: those sent before the collector first
    subscribed are not queued for it), or every other."""
    where = "site = 'SK-0'" if probe else "site != 'SK-0'"
    if influx is not None:
        series = influx.query(f'SELECT count("value") FROM "level_m" WHERE {where}', db=PREFIX)["results"][0]
        return series["series"][0]["values"][0][1] if series.get("series") else 0
    try:
        db = sqlite3.connect(f"file:{data_dir / 'readings.sqlite'}?mode=ro", uri=True)
        try:
            return db.execute(f"SELECT COUNT(*) FROM readings WHERE {where}").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:  # not created yet
        return 0


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 1), "p99": round(pct(values, 0.99), 1)} if values else {}


async def one_mode(mode: str, a: argparse.Namespace, broker: Mosquitto, twilio_url: str, d: Path,
                   influx: InfluxDB1 | None) -> dict:
    trials, warmup = a.trials, 2
    data_dir = Path(tempfile.mkdtemp(dir=a.data_dir)) if a.data_dir else d / "var"
    if influx is not None:
        influx.query(f'DROP DATABASE "{PREFIX}"', db=PREFIX)  # the other mode's readings
        influx.create_db(PREFIX)
    write_deployment(d, mqtt_port=broker.port, twilio_url=twilio_url, sites=a.sites, wait_s=a.wait_s,
                     data_dir=data_dir, influx_url=influx.url if influx else None)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PHONE_TWILIO_TOKEN": TOKEN}
    procs = start_parts(mode, d, env)
    bg_sites = range(trials + warmup, a.sites)
    published: dict[str, float] = {}  # site -> wall time just before its triggering reading was published
    sms: dict[str, float] = {}  # site -> the stand-in's stamp of its first SMS
    hop: list[float] = []  # the same moments: one QoS 1 message through the broker back to this process
    triggers = 0  # readings published besides the background, after the readiness probe reached the phone
    stop = asyncio.Event()
    kept_log = None
    try:
        async with aiohttp.ClientSession() as http, \
                aiomqtt.Client("127.0.0.1", broker.port, identifier=f"bench-phone-{mode}",
                               max_inflight_messages=1000, socket_options=NO_DELAY) as pub:  # as edge's uplink
            seen = [0]
            arrived: dict[str, float] = {}  # site -> wall time its warning reached the broker (a subscriber's view)
            await pub.subscribe(f"{PREFIX}/warnings/#", qos=0)
            await pub.subscribe(f"{PREFIX}/bench/ping", qos=1)
            pong = asyncio.Event()

            async def watch() -> None:
                async for m in pub.messages:
                    if str(m.topic).endswith("/ping"):
                        pong.set()
                    else:
                        arrived.setdefault(str(m.topic).split("/")[3], time.time())
            watcher = asyncio.create_task(watch())
            # readiness: a probe reaching the phone means the rules and the alerts are subscribed, a probe stored
            # that the collector is (messages published before its shared subscription existed are not queued for
            # it: the background's first ticks were counted as lost)
            deadline = time.monotonic() + 120
            phoned = False
            while True:
                await pub.publish(f"{PREFIX}/readings/gw-0", batch(0, [(0, 312.5)]), qos=1)
                if not phoned:
                    with contextlib.suppress(TimeoutError):
                        await first_sms(http, twilio_url, monitor(0), seen, 3)
                        phoned = True
                else:
                    await asyncio.sleep(1)
                if phoned and stored(data_dir, influx, probe=True):
                    break
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    tail = (d / f"{mode}.log").read_text(errors="replace").splitlines()[-20:]  # d goes
                    raise RuntimeError(f"{mode}: Yujing did not come up; its log ends:\n" + "\n".join(tail))
            bg = asyncio.create_task(background(pub, a.rate, bg_sites, stop))
            await asyncio.sleep(3)  # background in steady state
            cpu0, t0 = cpu_s([p.pid for p in procs]), time.monotonic()
            for i in range(1, trials + warmup):
                await asyncio.sleep(0.2 + (i % 7) * 0.037)  # not in phase with the background's 100 ms ticks
                # the floor under this load: one QoS 1 message through the broker back to this process
                pong.clear()
                t = time.time()
                await pub.publish(f"{PREFIX}/bench/ping", b"ping", qos=1)
                await asyncio.wait_for(pong.wait(), 10)
                if i >= warmup:
                    hop.append((time.time() - t) * 1000)
                t = time.time()
                await pub.publish(f"{PREFIX}/readings/gw-{i % GATEWAYS}", batch(i % GATEWAYS, [(i, 312.5)]), qos=1)
                triggers += 1
                created = await first_sms(http, twilio_url, monitor(i), seen, 60)
                if i >= warmup:
                    published[f"SK-{i}"], sms[f"SK-{i}"] = t, created
            busy = (cpu_s([p.pid for p in procs]) - cpu0) / (time.monotonic() - t0)
            stop.set()
            sent = await bg
            watcher.cancel()
            # every reading published since should reach the store: the background went through the collector
            # (the collector may be behind under load: its spool or a slow store; 120 s of nothing new is a loss)
            expected, t_end = sent + triggers, time.monotonic()
            last, deadline = -1, t_end + 120
            while (kept := stored(data_dir, influx)) < expected and time.monotonic() < deadline:
                if kept > last:
                    last, deadline = kept, time.monotonic() + 120
                await asyncio.sleep(0.5)
            behind_s = time.monotonic() - t_end
            if kept < expected:  # a loss: keep the parts' log (d is removed on the way out)
                kept_log = tempfile.mkstemp(prefix=f"phone-{mode}-", suffix=".log")[1]
                shutil.copy(d / f"{mode}.log", kept_log)
            at_alerts = alerts_stamps(data_dir)
    finally:
        stop.set()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
        if a.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    lat = [(sms[s] - published[s]) * 1000 for s in published]
    hops: dict[str, list[float]] = {k: [] for k in ("publish_to_warning_on_broker", "warning_on_broker_to_alerts_received",
                                                   "alerts_received_to_claimed", "claimed_to_sms_at_standin")}
    for site, t in published.items():
        received, claimed = at_alerts.get(site, (None, None))
        if site not in arrived or received is None or claimed is None:
            continue  # a stamp missing: this trial has no split
        marks = [t, arrived[site], received, claimed, sms[site]]
        for k, (x, y) in zip(hops, itertools.pairwise(marks), strict=True):
            hops[k].append((y - x) * 1000)
    return {"data_dir": "tmpfs" if a.data_dir == "/dev/shm" else (a.data_dir or "disk"),
            "store": "influxdb 1.x, collector.workers auto" if influx else "sqlite, one collector process",
            "processes": len(procs), "trials": len(lat),
            "readings_published": sent + triggers, "readings_stored_by_collector": kept,
            "store_complete_after_s": round(behind_s, 1),  # from the end of publishing
            **({"readings_missing_log": kept_log} if kept_log else {}),
            "background_readings_sent": sent, "yujing_cpu_cores_busy": round(busy, 2),
            "reading_to_first_sms_ms": {**summary(lat), "min": round(min(lat), 1), "max": round(max(lat), 1)},
            # (as before the split: every trial whose warning this process saw, so comparable with earlier rounds)
            "of_which_reading_to_warning_on_broker_ms": summary([(arrived[s] - t) * 1000 for s, t in published.items()
                                                                 if s in arrived]),
            "hops_ms": {k: summary(v) for k, v in hops.items()}, "trials_split": len(hops["claimed_to_sms_at_standin"]),
            "floor_one_broker_hop_ms": summary(hop)}


async def main(a: argparse.Namespace) -> dict:
    out: dict = {"background_readings_per_s": a.rate, "sites": a.sites,
                 "broker": "mosquitto" + (", set_tcp_nodelay true" if a.nodelay else ", Nagle on"),
                 "grouping_wait_s": "deployment default" if a.wait_s is None else a.wait_s,
                 "load_before": os.getloadavg()}
    influx = InfluxDB1().start() if a.store == "influxdb" else None
    try:
        for mode in (["run", "parts"] if a.mode == "both" else [a.mode]):
            out["yujing_run" if mode == "run" else "separate_processes"] = await run_mode(mode, a, influx)
    finally:
        if influx is not None:
            influx.cleanup()
    out["load_after"] = os.getloadavg()
    return out


async def run_mode(mode: str, a: argparse.Namespace, influx: InfluxDB1 | None) -> dict:
    """One mode on a fresh stand-in and broker: no record or session of the other mode's run."""
    port = free_port()
    standin = subprocess.Popen([sys.executable, "-m", "simulators.twilio", "--port", str(port), "--quiet",
                                "--auth-token", TOKEN, "--account-sid", ACCOUNT], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert standin.stdout is not None
    standin.stdout.readline()  # listening
    broker = Mosquitto(extra_conf="set_tcp_nodelay true\n" if a.nodelay else "").start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return await one_mode(mode, a, broker, f"http://127.0.0.1:{port}", Path(tmp), influx)
    finally:
        broker.cleanup()
        standin.terminate()
        standin.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["both", "run", "parts"], default="both")
    p.add_argument("--trials", type=int, default=100, help="at 100, p99 is the second slowest")
    p.add_argument("--store", choices=["influxdb", "sqlite"], default="influxdb",
                   help="the collector's store (influxdb: InfluxDB 1.x, a worker per core; sqlite: one process)")
    p.add_argument("--rate", type=float, default=1000.0, help="background readings/s")
    p.add_argument("--sites", type=int, default=600)
    p.add_argument("--no-broker-nodelay", dest="nodelay", action="store_false",
                   help="leave Mosquitto's Nagle on (its default; deploy/mosquitto/yujing.conf turns it off)")
    p.add_argument("--data-dir", help="where the parts keep their state (e.g. /dev/shm: is the disk the bound?)")
    p.add_argument("--wait-s", type=float, default=None, help="alerts.grouping.wait_s (default: the deployment's)")
    print(json.dumps(asyncio.run(main(p.parse_args())), ensure_ascii=False, indent=2))
