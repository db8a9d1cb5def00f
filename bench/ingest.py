"""Collector ingestion benchmark against real Mosquitto and InfluxDB 1.6.7 (started here). Prints JSON.

    python3 bench/ingest.py [--messages 100000] [--batch-messages 10000] [--per-message 50] [--profile DIR]
                            [--only a,b,c,d,d2,dv,e]

(a) raw:      one bare paho subscriber drains a QoS 1 backlog of N messages and does nothing else
(b) drain:    one collector process drains the same backlog into InfluxDB, one reading per message
(c) shared:   two collector processes on a shared subscription ($share/...) drain it
(d) batches:  one collector drains messages carrying the edge agent's batches (readings/s); beside it, in the
              same run, the InfluxDB ceiling: the same readings as pre-built line protocol POSTed straight to the
              same InfluxDB (batch_size points per POST, one connection as the collector's writer, and two)
(d2)          d with two collector processes on a shared subscription (how the collector scales)
(dw)          d with ONE collector invocation as `yujing collector` runs it: ``collector.workers: auto``, a worker
              process per core on a shared subscription (collector/workers.py); CPU and peak RSS of the whole tree.
              The other figures run ``workers: 1`` (one process each) unless --collector workers=... says otherwise
(dv)          d into VictoriaMetrics through the influxdb_v2 writer: the collector's own ceiling when the
              database is not the bound (not the InfluxDB figure)
(e) latency:  publish → visible in InfluxDB, p50/p99, with a 1,000 readings/s background stream
              (its own fresh InfluxDB; the collector's write-latency histogram shows the database's share)
(f) per collector process: peak RSS (VmHWM) and CPU seconds per reading

With --profile DIR, py-spy records each collector process (flame graphs in DIR).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("yujing_test_servers", ROOT / "tests" / "servers.py")
servers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(servers)  # type: ignore[union-attr]

from yujing.compose import Config  # noqa: E402
from collector.config import CollectorConfig, InfluxV1Store, InfluxV2Store  # noqa: E402
from collector.rows import decode_rows  # noqa: E402
from collector.stores.lineproto import lines  # noqa: E402
from yujing.model import Reading, ReadingBatch  # noqa: E402

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
PREFIX = "bench"
TUNING: dict = {}  # --collector KEY=VALUE: CollectorConfig fields for every collector of the run
TOPIC = f"{PREFIX}/readings/gw-bench"
STALL_S = 60  # a drain that stores nothing more for this long has stalled: reported, not waited on

# SIGTERM stops it as it stops `yujing collector` (rt.stop: workers stopped and waited for), not by dying at once:
# a supervisor killed outright leaves its workers to notice and stop on their own, and one still connected when
# the next phase starts takes messages (and their counts) from that phase's collectors under the same client id.
RUNNER = """
import asyncio, signal, sys
sys.path.insert(0, {root!r})
from yujing.compose import Config
from collector.workers import serve
from yujing.runtime import Runtime
import logging; logging.basicConfig(level=logging.WARNING)
cfg = Config.model_validate_json(open(sys.argv[1]).read())

async def main():
    rt = Runtime(cfg)
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, rt.stop.set)
    await serve(rt)

asyncio.run(main())
"""


def payloads(n: int, per_message: int, tag: str) -> list[bytes]:
    out = []
    k = 0
    for i in range(n):
        rs = [Reading(id=f"{tag}-{k + j}", site=f"S{(k + j) % 500}", sensor="rg", quantity="rain_mm",
                      value=float((k + j) % 97) / 10, unit="mm", ts=T0 + timedelta(milliseconds=k + j),
                      gateway="gw-bench") for j in range(per_message)]
        k += per_message
        out.append((rs[0].model_dump_json() if per_message == 1
                    else ReadingBatch(gateway="gw-bench", readings=rs).model_dump_json()).encode())
    return out


def publish_all(port: int, items: list[bytes]) -> None:
    """Publish QoS 1 as fast as the broker takes it; returns when every PUBACK is in."""
    done = threading.Event()
    left = [len(items)]
    # Our own window, not paho's: with paho's in-flight limit, publishing from this thread while its
    # network thread releases the window loses the wake-up now and then and the run hangs (seen at 100,000).
    window = threading.BoundedSemaphore(1000)

    def on_publish(_c, _u, _mid, _rc, _p):
        window.release()
        left[0] -= 1
        if left[0] == 0:
            done.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}")
    c.max_inflight_messages_set(65_535)
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    for p in items:
        window.acquire()
        c.publish(TOPIC, p, qos=1)
    if not done.wait(600):
        raise RuntimeError(f"publish: {left[0]} of {len(items)} messages never acknowledged")
    c.loop_stop()
    c.disconnect()


def forget_session(port: int, client_id: str) -> None:
    """Drop a finished phase's persistent session, so later phases' messages are not queued for it too."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.connect("127.0.0.1", port)
    c.loop(0.2)
    c.disconnect()


def raw_drain(port: int, items: list[bytes]) -> float:
    """(a) A bare paho subscriber (persistent session, auto-ack) draining the backlog: messages/s."""
    cid = f"raw-{time.monotonic_ns()}"
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False)
    c.connect("127.0.0.1", port)
    c.subscribe(TOPIC, qos=1)
    c.loop(1)
    c.loop(0.2)
    c.disconnect()
    publish_all(port, items)
    got = [0]
    first = [0.0]

    def on_message(_c, _u, _m):
        if not got[0]:
            first[0] = time.perf_counter()
        got[0] += 1

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False)
    c.on_message = on_message
    t0 = time.perf_counter()
    c.connect("127.0.0.1", port)
    while got[0] < len(items):
        c.loop(0.1)
    t1 = time.perf_counter()
    c.disconnect()
    forget_session(port, cid)
    return len(items) / (t1 - t0)


class Collector:
    """One collector process with its own metrics port."""

    def __init__(self, work: Path, mqtt_port: int, store: InfluxV1Store | InfluxV2Store, name: str,
                 share_group: str | None, profile: Path | None, workers: str | int | None = None) -> None:
        self.metrics_port = servers.free_port()
        tuning = {"workers": 1, **TUNING, **({"workers": workers} if workers is not None else {})}
        self.workers = servers_workers(tuning["workers"])
        cfg = Config()
        cfg = cfg.model_copy(update={
            "mqtt": cfg.mqtt.model_copy(update={"port": mqtt_port, "topic_prefix": PREFIX}),
            "deployment": cfg.deployment.model_copy(update={"data_dir": str(work / name)}),
            "collector": CollectorConfig(store=store,
                                         client_id=f"bench-{name}", share_group=share_group,
                                         metrics_port=self.metrics_port, **tuning),
        })
        (work / f"{name}.json").write_text(cfg.model_dump_json())
        (work / "run.py").write_text(RUNNER.format(root=str(ROOT)))
        cmd = [sys.executable, str(work / "run.py"), str(work / f"{name}.json")]
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            # --nonblocking: sampling does not stop the process (stopping it 200 times a second slowed the drain)
            cmd = ["py-spy", "record", "-r", "200", "--nonblocking", "--format", "raw",
                   "-o", str(profile / f"{name}.txt"), "--"] + cmd
        self.log = open(work / f"{name}.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self._python_pid(profile is not None)

    def _python_pid(self, profiled: bool) -> int:
        if not profiled:
            return self.proc.pid
        for _ in range(200):
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            if kids:
                return int(kids[0])
            time.sleep(0.02)
        raise RuntimeError("py-spy did not start the collector")

    def metric(self, name: str) -> float:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).read().decode()
        except OSError:
            return -1.0
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def histogram(self, name: str) -> dict[str, float]:
        """A histogram's cumulative bucket counts, by upper bound."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith(name + "_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                out[le] = float(line.rsplit(" ", 1)[1])
        return out

    def wait_subscribed(self) -> None:
        servers._wait(lambda: self.metric("yujing_collector_mqtt_subscribed") >= self.workers, "collector subscribed",
                      60)

    def stats(self) -> dict:
        """CPU seconds of the process and its workers; peak RSS of the biggest one (and each, with workers)."""
        used, hwm = 0.0, []
        for pid in [self.pid, *descendants(self.pid)]:
            status = Path(f"/proc/{pid}/status").read_text()
            hwm.append(int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]))
            used += cpu_s(pid)
        out = {"peak_rss_mib": round(max(hwm) / 1024, 1), "cpu_s": used}
        if len(hwm) > 1:
            out["peak_rss_mib_each"] = [round(h / 1024, 1) for h in hwm]
        return out

    def stop(self) -> None:
        """SIGTERM, and wait until the process and every worker of it are gone."""
        tree = descendants(self.pid)
        os.kill(self.pid, signal.SIGTERM)
        self.proc.wait(60)
        servers._wait(lambda: not any(map(alive, tree)), "collector workers gone", 60)
        self.log.close()


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has been busy (everyone's processes, not only ours), /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


class Servers:
    """CPU of InfluxDB (or VictoriaMetrics) and Mosquitto over one phase, and of the whole machine: what bounds
    a drain on cores the servers share with the collector (and, on a shared machine, with other people's work;
    ``load`` is the 1-minute load average at the phase's start and end)."""

    def __init__(self, **servers) -> None:
        self.pids = {name: srv.proc.pid for name, srv in servers.items() if srv is not None}
        self.cpu0 = {n: cpu_s(p) for n, p in self.pids.items()}
        self.t0, self.busy0, self.load0 = time.perf_counter(), machine_busy_s(), os.getloadavg()[0]

    def report(self, per: int, wall: float | None = None) -> dict:
        """Cores each server used in the phase and its CPU per reading (``per`` readings/points in the phase);
        ``wall``: the phase's seconds when shorter than the time since this was made (a collector's start-up)."""
        since = time.perf_counter() - self.t0
        wall = wall or since
        out: dict = {"load_start_end": [round(self.load0, 1), round(os.getloadavg()[0], 1)],
                     "machine_busy_cores": round((machine_busy_s() - self.busy0) / since, 2),
                     "machine_cores": os.cpu_count()}
        for name, pid in self.pids.items():
            used = cpu_s(pid) - self.cpu0[name]
            out[name] = {"cores": round(used / wall, 2), "cpu_us_per_reading": round(used / per * 1e6, 1)}
        return out


def servers_workers(workers: str | int) -> int:
    """How many worker processes ``collector.workers`` means on this machine (as collector/workers.py decides)."""
    from collector.workers import usable_cores

    return usable_cores() if workers == "auto" else int(workers)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a collector's workers), from /proc/*/stat."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def drain(work: Path, mq, db, items: list[bytes], readings: int, name: str, processes: int,
          profile: Path | None, workers: str | int | None = None) -> dict:
    """Start collectors (persistent sessions), stop them, queue the backlog, restart them, time the drain.

    ``db``: an InfluxDB1 (database bench_<name>) or a VictoriaMetrics (written through the influxdb_v2 writer)."""
    if isinstance(db, servers.InfluxDB1):
        store = InfluxV1Store(type="influxdb_v1", url=db.url, database=f"bench_{name}")
    else:
        store = InfluxV2Store(type="influxdb_v2", url=db.url, bucket=f"bench_{name}")
    group = f"g{name}" if processes > 1 else None
    names = [f"{name}{i}" for i in range(processes)]
    first = [Collector(work, mq.port, store, n, group, None, workers) for n in names]
    for c in first:
        c.wait_subscribed()
    startup_cpu_s = max(c.stats()["cpu_s"] for c in first)  # imports and connecting: not per-reading work
    for c in first:
        c.stop()
    publish_all(mq.port, items)
    srv = Servers(database=db, mosquitto=mq)  # from the collectors' start: their imports cost the servers nothing
    cols = [Collector(work, mq.port, store, n, group, profile, workers) for n in names]
    t0, last, moved = None, -1.0, time.monotonic()
    while True:
        msgs = sum(max(0.0, c.metric("yujing_collector_messages_total")) for c in cols)
        if t0 is None and msgs > 0:
            t0 = time.perf_counter()
        out = sum(max(0.0, c.metric("yujing_collector_readings_out_total")) for c in cols)
        if out >= readings:
            break
        if out != last:
            last, moved = out, time.monotonic()
        elif time.monotonic() - moved > STALL_S:  # a figure, not a hang: say what is missing and stop
            dups = sum(max(0.0, c.metric("yujing_collector_duplicates_total")) for c in cols)
            for c in cols:
                c.stop()
            raise RuntimeError(f"drain {name}: stalled at {out:.0f} of {readings} readings stored for {STALL_S} s "
                               f"({msgs:.0f} messages, {dups:.0f} duplicates); logs in {work}")
        time.sleep(0.1)  # scraping /metrics costs the collector CPU: poll gently (±0.1 s on the timing)
    elapsed = time.perf_counter() - t0
    servers_cpu = srv.report(readings, elapsed)
    per, collector_cpu_s = [], 0.0
    for c in cols:
        s = c.stats()
        s["readings"] = c.metric("yujing_collector_readings_out_total")
        used = max(0.0, s.pop("cpu_s") - startup_cpu_s)
        collector_cpu_s += used
        s["cpu_us_per_reading"] = round(used / max(1.0, s["readings"]) * 1e6, 1)
        # How long the sink waited on the database (one write at a time): near 1, the database is the bound
        writes = c.metric("yujing_collector_write_seconds_count")
        waited = c.metric("yujing_collector_write_seconds_sum")
        s["db_write_ms_mean"] = round(waited / max(1.0, writes) * 1000, 1)
        s["db_wait_share"] = round(waited / elapsed, 2)
        per.append(s)
        c.stop()
    for n in names:
        for k in range(1, cols[0].workers + 1):  # worker k > 1 has its own session: collector/workers.py
            forget_session(mq.port, f"bench-{n}" if k == 1 else f"bench-{n}-w{k}")
    return {"rate": round(readings / elapsed), "seconds": round(elapsed, 2), "processes": per,
            "collector_cores": round(collector_cpu_s / elapsed, 2), "servers": servers_cpu}


def influx_raw(influx, items: list[bytes], batch_size: int, connections: int) -> dict:
    """The InfluxDB ceiling for (d): the same readings as pre-built line protocol, ``batch_size`` points per POST
    (as the collector writes them), from ``connections`` keep-alive connections at once: points/s, and the
    CPU InfluxDB spent per point (the same points the collector writes: ``lines()`` of the same rows, ns)."""
    import http.client

    rows = [r for p in items for r in decode_rows(p, TOPIC, 1 << 30)]
    bodies = [lines(rows[i:i + batch_size]).encode() for i in range(0, len(rows), batch_size)]
    db = f"bench_raw{connections}"
    influx.create_db(db)

    def post(mine: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", influx.port, timeout=60)
        for body in mine:
            conn.request("POST", f"/write?db={db}&precision=ns", body)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 204:
                raise RuntimeError(f"influxdb: HTTP {resp.status}")
        conn.close()

    threads = [threading.Thread(target=post, args=(bodies[i::connections],)) for i in range(connections)]
    srv = Servers(influxd=influx)
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = len(rows) / (time.perf_counter() - t0)
    return {"points_per_s": round(rate), **srv.report(len(rows))}


def latency(work: Path, mq, influx, seconds: float, profile: Path | None) -> dict:
    """(e) Probes published one at a time in a 1,000 readings/s stream; each timed until InfluxDB returns it."""
    db = "bench_latency"
    col = Collector(work, mq.port, InfluxV1Store(type="influxdb_v1", url=influx.url, database=db), "lat", None,
                    profile)
    col.wait_subscribed()
    stop = threading.Event()

    def background() -> None:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bg")
        c.connect("127.0.0.1", mq.port)
        c.loop_start()
        k, t = 0, time.perf_counter()
        while not stop.is_set():
            for p in payloads(10, 1, f"bg{k}"):
                c.publish(TOPIC, p, qos=1)
            k += 1
            t += 0.01
            time.sleep(max(0.0, t - time.perf_counter()))
        c.loop_stop()
        c.disconnect()

    bg = threading.Thread(target=background, daemon=True)
    bg.start()
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="probe")
    pub.connect("127.0.0.1", mq.port)
    pub.loop_start()
    lat = []
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        i += 1
        r = Reading(id=f"probe-{i}", site=f"probe-{i}", sensor="p", quantity="probe", value=1.0, unit="",
                    ts=datetime.now(timezone.utc))
        t0 = time.perf_counter()
        pub.publish(TOPIC, r.model_dump_json(), qos=1)
        while True:
            res = influx.query(f"SELECT value FROM probe WHERE site='probe-{i}'", db=db)["results"][0]
            if res.get("series"):
                break
            time.sleep(0.002)
        lat.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.05)
    stop.set()
    bg.join()
    pub.loop_stop()
    stats = col.stats()
    writes = col.histogram("yujing_collector_write_seconds")
    col.stop()
    q = statistics.quantiles(lat, n=100)
    return {"p50_ms": round(statistics.median(lat), 1), "p99_ms": round(q[98], 1), "max_ms": round(max(lat), 1),
            "probes": len(lat), "peak_rss_mib": stats["peak_rss_mib"],
            # the collector's own view: how long InfluxDB took per batch (le seconds -> writes at or under)
            "db_writes_le_s": writes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--batch-messages", type=int, default=10_000)
    ap.add_argument("--per-message", type=int, default=50)
    ap.add_argument("--latency-s", type=float, default=15.0)
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--only", default="a,b,c,d,d2,dw,dv,e", help="comma-separated figures to run")
    ap.add_argument("--collector", action="append", default=[], metavar="KEY=VALUE",
                    help="a CollectorConfig field for every collector (repeatable), e.g. receive_maximum=2000")
    args = ap.parse_args()
    only = set(args.only.split(",")) if "," in args.only or args.only in ("d2", "dv", "dw") else set(args.only)
    for kv in args.collector:
        key, _, value = kv.partition("=")
        TUNING[key] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    work = Path(tempfile.mkdtemp(prefix="yujing-bench-ingest-"))
    # Saved every 10 s as deploy/mosquitto/yujing.conf does (the tests' 1 s would rewrite a 100,000-message
    # store every second, stalling the broker for hundreds of ms each time)
    mq = servers.Mosquitto(autosave_s=10).start()
    influx = servers.InfluxDB1().start()
    out: dict = {"messages": args.messages, "cpus": os.cpu_count(), "collector": TUNING}
    try:
        singles = payloads(args.messages, 1, "r")
        if "a" in only:
            out["a_raw_paho_msgs_per_s"] = round(raw_drain(mq.port, singles))
        if "b" in only:
            out["b_collector"] = drain(work, mq, influx, singles, args.messages, "b", 1, args.profile)
        if "c" in only:
            out["c_two_collectors_shared"] = drain(work, mq, influx, singles, args.messages, "c", 2, args.profile)
        n_batched = args.batch_messages * args.per_message
        batched = payloads(args.batch_messages, args.per_message, "d") if only & {"d", "d2", "dw", "dv"} else []
        if "d" in only:
            out["d_batched"] = drain(work, mq, influx, batched, n_batched, "d", 1, args.profile)
            out["d_batched"]["readings_per_message"] = args.per_message
            size = CollectorConfig(**TUNING).batch_size
            raw = {f"{n}_connection{'s' if n > 1 else ''}": influx_raw(influx, batched, size, n) for n in (1, 2)}
            out["d_influx_raw_points_per_s"] = {k: v.pop("points_per_s") for k, v in raw.items()}
            out["d_influx_raw_points_per_s"]["points_per_post"] = size
            out["d_influx_raw_cpu"] = raw
        if "d2" in only:
            out["d2_two_collectors_shared"] = drain(work, mq, influx, batched, n_batched, "dd", 2, args.profile)
        if "dw" in only:
            out["dw_one_invocation_workers_auto"] = drain(work, mq, influx, batched, n_batched, "dw", 1, args.profile,
                                                          workers="auto")
        if "dv" in only:
            vm = servers.VictoriaMetrics().start()
            try:
                out["dv_victoriametrics_not_influxdb"] = drain(work, mq, vm, batched, n_batched, "dv", 1, args.profile)
            finally:
                vm.cleanup()
        if "e" in only:
            # Its own InfluxDB, so (e) does not depend on what (b)-(d) left behind. (The p99 of 430-890 ms seen
            # before was the broker: a 1 s autosave of sessions holding 300,000 messages, fixed above.)
            fresh = servers.InfluxDB1().start()
            try:
                out["e_latency"] = latency(work, mq, fresh, args.latency_s, args.profile)
            finally:
                fresh.stop()
        a, raw = out.get("a_raw_paho_msgs_per_s"), out.get("d_influx_raw_points_per_s", {}).get("1_connection")
        ratios = {}
        if a:
            ratios = {k: round(out[f]["rate"] / a, 2) for k, f in
                      (("b/a", "b_collector"), ("c/a", "c_two_collectors_shared")) if f in out}
        if raw:  # (d) against what this InfluxDB takes at all from one writer
            ratios.update({k: round(out[f]["rate"] / raw, 2) for k, f in
                           (("d/influx_raw", "d_batched"), ("d2/influx_raw", "d2_two_collectors_shared"),
                            ("dw/influx_raw", "dw_one_invocation_workers_auto")) if f in out})
        if ratios:
            out["ratios"] = ratios
    finally:
        mq.cleanup()
        influx.cleanup()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
