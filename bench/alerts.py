"""Alerts benchmark: how fast a township-wide red reaches every household, and how soon the first SMS leaves.

    python bench/alerts.py [--households 5000] [--sms-rate 1000] [--concurrency 64] [--trials 40]

Starts a private Mosquitto, the Twilio stand-in (its own process, as Twilio would be: its status
callbacks still come back to the alerts webhooks) and the alerts service (in this process, the real
twilio client over loopback HTTP), with the example chain of ``alerts/example`` and ``--households``
households under its village. Measures:

- fan-out: a red landslide warning to every household: notifications per second issued to the stand-in
  (first to last create request) and the time until the last one;
- latency: for ``--trials`` fresh warnings (blue, one site, three recipients), the time from the
  triggering reading (the warning's ``updated_at``, stamped when it is published) to the first SMS
  request at the stand-in, p50/p99. The rules stage (reading → warning) is measured by its own bench.

The per-channel rate limit is ours: ``--sms-rate`` per second. Without ``--limits`` the stand-in takes
everything at once, so the figure is the software's own ceiling (notifications/s). The fan-out also reports
the CPU each process used meanwhile (the alerts service with this bench's client, and the stand-in: a separate
service in the field, here on the same cores), the distinct notifications the stand-in received (by the
notification ref each request's status callback carries: a notification sent twice would count once) and,
with ``--profile DIR`` (py-spy), what each process spent its time on. With ``--limits`` the
stand-in applies Twilio's published limits (1 SMS segment a second per long code, 1 call a second per account;
``--pool`` long codes): the bench then reports the time from publishing the red to the last household's last
segment leaving Twilio's queue (computed from the queue slots the stand-in assigned; nothing waits for hours),
beside the plan's estimate (the ``fanout-plan`` event) and the bound the limits impose
(total segments / (pool x 1/s), calls / 1/s). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import aiohttp
from servers import Mosquitto, free_port

from alerts_aliyun import SECRET as ALI_SECRET
from alerts_aliyun import settings as ali_settings
from testing.alerts import ACCOUNT, TOKEN, running_alerts
from yujing.model import Hazard, HazardWarning, Level, WarningState, utcnow


ALI_PUSH = "bench-push-token-0123"


def households_csv(path: Path, n: int, voice_share: float) -> None:
    rows = ["group,id,name,phone,channels"]
    every = int(1 / voice_share) if voice_share > 0 else 0
    for i in range(n):
        group = "shibao.gonghe.g1" if i % 2 else "shibao.gonghe.g2"
        channels = "sms voice" if every and i % every == 0 else "sms"
        rows.append(f"{group},h{i},住户{i}户,+86137{i:08d},{channels}")
    path.write_text("\n".join(rows) + "\n")


def warning(level: Level, key: str, site: str = "LS-GONGHE-01") -> HazardWarning:
    now = utcnow()
    return HazardWarning(key=key, version=1, hazard=Hazard.LANDSLIDE, level=level, state=WarningState.ISSUED,
                         site=site, area="shibao.gonghe.g1", title="位移速率超阈值", evidence=["裂缝计1 位移 12.5 mm"],
                         issued_at=now - timedelta(seconds=1), updated_at=now)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def notification_ref(record: dict) -> str:
    """The notification a request at the stand-in was for: the ``n`` of its status callback URL."""
    return parse_qs(urlsplit(record.get("status_callback") or "").query).get("n", [""])[0]


IDLE = re.compile(r";_worker \([^;]*concurrent/futures/thread\.py:\d+\)$")  # an executor thread waiting


class Profiler:
    """py-spy over each process during the fan-out (``--profile DIR``); a summary of where the CPU went."""

    def __init__(self, out: Path | None, pids: dict[str, int]) -> None:
        self.out, self.pids, self.procs = out, pids, {}

    def __enter__(self) -> "Profiler":
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            for name, pid in self.pids.items():
                self.procs[name] = subprocess.Popen(["py-spy", "record", "-r", "100", "-f", "raw", "-p", str(pid),
                                                     "-o", str(self.out / f"{name}.txt")],
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # py-spy attaches
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            proc.wait(30)

    def summary(self, top: int = 8) -> dict:
        """Per process: the share of samples in each of our frames and the library frames they call, and the
        functions the CPU was in (self time)."""
        out = {}
        for name in self.procs:
            incl: collections.Counter = collections.Counter()
            own: collections.Counter = collections.Counter()
            total = 0
            for line in (self.out / f"{name}.txt").read_text().splitlines():  # type: ignore[operator]
                stack, _, n = line.rpartition(" ")
                if IDLE.search(stack):  # py-spy counts an idle executor thread as busy; /proc says it uses none
                    continue
                frames = [re.sub(r" \(.*/(site-packages|python3\.\d+|alerts|simulators|yujing)/", r" (\1/",
                                 re.sub(r":\d+\)$", ")", f)) for f in stack.split(";")[1:]]
                total += int(n)
                own[frames[-1] if frames else "?"] += int(n)
                for f in set(frames):
                    if not f.startswith(("Runner.run", "run (", "BaseEventLoop", "Handle._run", "<module>",
                                         "_run_", "main (")):
                        incl[f] += int(n)
            out[name] = {"samples": total,
                         "inclusive_pct": {f: round(100 * c / total, 1) for f, c in incl.most_common(top * 4)},
                         "self_pct": {f: round(100 * c / total, 1) for f, c in own.most_common(top)}}
        return out


def push_urls(rig) -> dict[str, str]:
    """Alibaba Cloud's push URLs of the running service (as the console's "HTTP 批量推送" is set)."""
    return rig.live.aliyun_urls


async def queued(rig, warning_id: str, timeout_s: float) -> None:
    """Until the notifications of ``warning_id`` are in the log (written in one transaction: all, or none yet).
    The service may take a warning after publish() returns, when settled() would still see nothing to do."""
    deadline = time.monotonic() + timeout_s
    db = rig.pipeline().nflog.notifications.db
    while not db.execute("SELECT COUNT(*) FROM notifications WHERE warning_id=?", (warning_id,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{warning_id} was not taken")
        await asyncio.sleep(0.01)


async def receipts_in(rig, timeout_s: float) -> None:
    """Until every SMS of the red has its delivery receipt recorded in the log."""
    deadline = time.monotonic() + timeout_s
    db = rig.pipeline().nflog.notifications.db
    sql = "SELECT COUNT(*) FROM notifications WHERE warning_key=? AND channel='sms' AND status!='delivered'"
    while db.execute(sql, ("bench:red",)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise TimeoutError("receipts did not all come back")
        await asyncio.sleep(0.25)  # a count over the red's rows: cheap, but it runs in the measured process


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


class Remote:
    """The stand-in in its own process (as Twilio is), read through its ``/_standin/records`` endpoint."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[dict] = []
        self.calls: list[dict] = []

    async def poll(self, http: aiohttp.ClientSession) -> None:
        async with http.get(f"{self.url}/_standin/records",
                            params={"sms": len(self.messages), "calls": len(self.calls)}) as r:
            doc = await r.json()
        self.messages += doc["messages"]
        self.calls += doc["calls"]

    async def wait(self, http: aiohttp.ClientSession, cond, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            await self.poll(http)
            if cond():
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the stand-in did not get what was expected")
            await asyncio.sleep(0.002)


async def main(args: argparse.Namespace) -> dict:
    # as deployed (deploy/mosquitto/yujing.conf): with Mosquitto's default Nagle, a PUBLISH to alerts right after
    # the broker's PUBACK of its CAP document waits for alerts' delayed ACK, ~40 ms (--no-broker-nodelay shows it)
    broker = Mosquitto(extra_conf="set_tcp_nodelay true\n" if args.nodelay else "").start()
    port = free_port()
    limits = ["--sms-segments-per-s", "1", "--calls-per-s", "1"] if args.limits else []
    standin = subprocess.Popen([sys.executable, "-m", "simulators.twilio", "--port", str(port), "--quiet",
                                "--auth-token", TOKEN, "--account-sid", ACCOUNT, *limits], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert standin.stdout is not None
    standin.stdout.readline()  # "Twilio stand-in on …": it is listening
    tw = Remote(f"http://127.0.0.1:{port}")
    children = [standin]
    out: dict = {"households": args.households, "sms_rate_limit_per_s": args.sms_rate,
                 "concurrency": args.concurrency,
                 "standin": "its own process (a separate service in the field), on the same 2 cores",
                 "broker": "mosquitto" + (", set_tcp_nodelay true" if args.nodelay else ", Nagle on"),
                 "load_before": os.getloadavg(),
                 "twilio_limits": "1 segment/s per long code, 1 call/s per account" if args.limits else "off",
                 "pool": args.pool}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            households_csv(d / "households-bench.csv", args.households, args.voice_share)
            alerts = {"grouping": {"wait_s": 0}, "households": str(d / "households-bench.csv"),
                      "rates": {"sms": {"per_s": args.sms_rate, "burst": args.concurrency,
                                        "concurrency": args.concurrency},
                                "voice": {"per_s": args.voice_rate, "burst": 8, "concurrency": 16}},
                      "twilio": {"from_numbers": [f"+86101234{i:05d}" for i in range(args.pool)]}}
            ali_port = free_port()
            if args.provider == "aliyun":
                os.environ["YUJING_BENCH_ALIYUN_SECRET"], os.environ["YUJING_BENCH_ALIYUN_PUSH"] = ALI_SECRET, ALI_PUSH
                alerts.update(providers=["aliyun"], aliyun=ali_settings(f"127.0.0.1:{ali_port}",
                                                                        "YUJING_BENCH_ALIYUN_PUSH",
                                                                        "YUJING_BENCH_ALIYUN_SECRET"))
            async with aiohttp.ClientSession() as http, \
                    running_alerts(d / "run", mqtt_port=broker.port, prefix="bench", alerts=alerts,
                                   twilio=tw.url) as rig:
                if args.provider == "aliyun":  # its pushes go to the service's URLs, known now that it listens
                    push = push_urls(rig)["sms_report"].rsplit("/", 1)[0]
                    ali = subprocess.Popen([sys.executable, str(ROOT / "bench" / "alerts_aliyun.py"), "--port",
                                            str(ali_port), "--push-base", push], stdout=subprocess.PIPE,
                                           stderr=subprocess.DEVNULL)
                    children.append(ali)
                    assert ali.stdout is not None
                    ali.stdout.readline()
                    tw, standin = Remote(f"http://127.0.0.1:{ali_port}"), ali
                lat: list[float] = []
                for i in range(args.trials):  # latency: one small warning at a time
                    await tw.poll(http)
                    n0 = len(tw.messages)
                    w = warning(Level.BLUE, f"bench:lat:{i}")
                    await rig.publish(w)
                    await tw.wait(http, lambda: len(tw.messages) > n0, 10)
                    lat.append((tw.messages[n0]["created"] - w.updated_at.timestamp()) * 1000)
                    await rig.settled(30)
                    # lift it, so the next trial is a new group (the same level again would be inhibited)
                    lifted = w.model_copy(update={"version": 2, "state": WarningState.LIFTED})
                    await rig.publish(lifted)
                    await queued(rig, lifted.id, 30)
                    await rig.settled(30)
                    await tw.poll(http)
                out["trigger_to_first_sms_ms"] = {"p50": round(statistics.median(lat), 2),
                                                  "p99": round(pct(lat, 0.99), 2), "max": round(max(lat), 2),
                                                  "trials": len(lat)}
                await tw.poll(http)
                n0, c0 = len(tw.messages), len(tw.calls)
                with Profiler(args.profile, {"alerts": os.getpid(), "standin": standin.pid}) as prof:
                    cpu0 = {"alerts": cpu_s(os.getpid()), "standin": cpu_s(standin.pid)}
                    commits0 = rig.pipeline().nflog.group.commits
                    t0 = time.time()
                    await rig.publish(warning(Level.RED, "bench:red"))  # fan-out: one red to every household
                    await queued(rig, "bench:red#1", 60)
                    await rig.settled(900)
                    await receipts_in(rig, 120)  # the CPU counted is the whole fan-out's, receipts included
                    await tw.poll(http)
                    wall = time.time() - t0
                    cpu = {k: cpu_s(pid) - cpu0[k] for k, pid in (("alerts", os.getpid()), ("standin", standin.pid))}
                sms, calls = tw.messages[n0:], tw.calls[c0:]
                stamps = sorted(r["created"] for r in sms + calls)
                sms_t = sorted(r["created"] for r in sms)
                span = stamps[-1] - stamps[0]
                if args.provider == "twilio":  # the notification ref each request's status callback carries
                    refs = {notification_ref(r) for r in sms} | {notification_ref(r) for r in calls}
                else:  # SendSms carries one OutId for a batch: a notification is a (kind, number) here
                    refs = {f"sms:{r['to']}" for r in sms} | {f"call:{r['to']}" for r in calls}
                out["red_fanout"] = {
                    "provider": args.provider, "sms": len(sms), "calls": len(calls), "notifications": len(stamps),
                    "distinct_notifications": len(refs - {""}),
                    "duplicates": len(stamps) - len(refs - {""}),
                    "sms_to_a_number_twice": len(sms) - len({r["to"] for r in sms}),
                    "first_request_after_publish_ms": round((stamps[0] - t0) * 1000, 1),
                    "last_request_after_publish_s": round(stamps[-1] - t0, 3),
                    "notifications_per_s": round((len(stamps) - 1) / span, 1) if span > 0 else None,
                    "sms_per_s": round((len(sms_t) - 1) / (sms_t[-1] - sms_t[0]), 1),
                    "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
                    "cpu_share_of_a_core": {k: round(v / wall, 2) for k, v in cpu.items()},
                    "cpu_ms_per_notification": {k: round(1000 * v / len(stamps), 3) for k, v in cpu.items()},
                    "window_s": round(wall, 2),  # publish → the last delivery receipt recorded
                    # the notification log's transactions (nflog/group.py), claims, sids and receipts included
                    "log_commits_per_notification": round((rig.pipeline().nflog.group.commits - commits0)
                                                          / len(stamps), 3),
                }
                if args.profile is not None:
                    out["profile"] = prof.summary()
                if args.limits:
                    out["red_fanout"].update(limited(sms, calls, t0, rig, args.pool))
    finally:
        for child in children:
            child.terminate()
            child.wait()
        broker.cleanup()
    return out


def limited(sms: list[dict], calls: list[dict], t0: float, rig, pool: int) -> dict:
    """Time to the last household with Twilio's limits on, from the queue slots the stand-in assigned."""
    from alerts.plan import segments

    done = [r["created"] + r["queued_s"] + segments(r["body"]) for r in sms] + \
        [r["created"] + r["queued_s"] + 1 for r in calls]
    plan = [json.loads(e[4]) for e in rig.events(what="fanout-plan") if "bench:red" in e[1]]
    segs = sum(segments(r["body"]) for r in sms)
    bound = max(segs / pool, len(calls) / 1.0)
    last = max(done) - t0
    return {"time_to_last_household_s": round(last, 1), "plan_estimate_s": plan[0]["last_s"] if plan else None,
            "bound_s": round(bound, 1), "segments": segs,
            "within_5_percent_of_bound": abs(last - bound) <= 0.05 * bound}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--households", type=int, default=5000)
    p.add_argument("--sms-rate", type=float, default=1000.0, help="provider SMS requests per second allowed")
    p.add_argument("--voice-rate", type=float, default=100.0)
    p.add_argument("--voice-share", type=float, default=0.0, help="share of households that also get a call")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--no-broker-nodelay", dest="nodelay", action="store_false",
                   help="leave Mosquitto's Nagle on (its default; deploy/mosquitto/yujing.conf turns it off)")
    p.add_argument("--limits", action="store_true", help="the stand-in applies Twilio's published limits")
    p.add_argument("--pool", type=int, default=1, help="long codes in the sender pool")
    p.add_argument("--provider", choices=["twilio", "aliyun"], default="twilio",
                   help="aliyun: Alibaba Cloud's SDKs against its stand-in (bench/alerts_aliyun.py), limits off")
    p.add_argument("--profile", type=Path, default=None, help="py-spy each process during the fan-out into DIR")
    print(json.dumps(asyncio.run(main(p.parse_args())), ensure_ascii=False, indent=2))
