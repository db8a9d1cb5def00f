"""Edge agent benchmark: readings/s one agent sustains, and its memory, with N simulated Modbus devices.

    python bench/edge.py [--devices 200] [--registers 4] [--interval 0.2] [--seconds 20]

Starts a private Mosquitto, one simulated Modbus TCP endpoint serving every
device (one slave id each), the agent as a separate process (``python -m
edge``, so its RSS is its own), and a subscriber counting reading ids at the
broker. Offered load = devices × registers / interval readings/s. Also
measures, in the same run, the raw rate at which one aiomqtt client
publishes QoS 1 messages of the same size to the same broker: the ceiling
the uplink works under, and how fast a backlog of ``--backlog`` readings
(a long outage) drains. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import aiomqtt  # noqa: E402
from servers import Mosquitto, free_port  # noqa: E402

from edge.outbox import Outbox  # noqa: E402
from edge.service import serve  # noqa: E402
from simulators.devices import simulate_devices  # noqa: E402
from testing.devices import deployment  # noqa: E402
from simulators.devices.values import Ramp  # noqa: E402
from yujing import topics  # noqa: E402
from yujing.clock import Clock  # noqa: E402
from yujing.model import Reading, ReadingBatch, new_id  # noqa: E402
from yujing.runtime import Runtime  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def raw_publish_rate(port: int, payload: bytes, seconds: float, inflight: int) -> float:
    """QoS 1 messages/s one client gets acknowledged with ``inflight`` outstanding."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-raw", max_inflight_messages=inflight) as c:
        sem, done = asyncio.Semaphore(inflight), 0
        t_end = time.monotonic() + seconds

        async def one() -> None:
            nonlocal done
            try:
                await c.publish("bench/raw", payload, qos=1)
                done += 1
            finally:
                sem.release()

        t0 = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            while time.monotonic() < t_end:
                await sem.acquire()
                tg.create_task(one())
        return done / (time.monotonic() - t0)


async def backlog_drain(port: int, directory: Path, n: int, batch: int, inflight: int) -> dict:
    """What a gateway does after a long outage: ``n`` readings already in the outbox, drained unthrottled."""
    cfg = deployment(directory, [{"id": "gw-backlog", "devices": [],
                                  "uplink": {"batch": batch, "rate_per_s": 1e9, "inflight": inflight}}],
                     mqtt_port=port, prefix="bench-backlog")
    t = datetime.now(timezone.utc)
    async with Outbox(cfg.path("", "edge-gw-backlog.outbox"), "gw-backlog") as ob:
        for start in range(0, n, 10_000):
            await ob.put([Reading(id=new_id(), site="S", sensor="d", quantity="level_m", value=i, unit="m", ts=t)
                          for i in range(start, min(n, start + 10_000))])
    seen = 0
    done = asyncio.Event()

    async def count(ready: asyncio.Event) -> None:
        nonlocal seen
        async with aiomqtt.Client("127.0.0.1", port, identifier="bench-backlog-sub") as c:
            await c.subscribe(topics.readings("bench-backlog"), qos=1)
            ready.set()
            async for msg in c.messages:
                seen += ReadingBatch.model_validate_json(msg.payload).readings.__len__()
                if seen >= n:
                    done.set()

    ready = asyncio.Event()
    sub = asyncio.create_task(count(ready))
    await ready.wait()
    rt = Runtime(cfg, Clock())
    t0 = time.monotonic()
    agent = asyncio.create_task(serve(rt))
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.monotonic() - t0
    rt.stop.set()
    await agent
    sub.cancel()
    return {"readings": n, "seconds": round(elapsed, 2), "readings_per_s": round(n / elapsed, 1),
            "note": "agent in the benchmark process here (no devices polled)"}


async def main(args: argparse.Namespace) -> dict:
    broker = Mosquitto().start()
    tmp = Path(tempfile.mkdtemp(prefix="yujing-bench-edge-"))
    port = free_port()
    regs = [{"quantity": "level_m", "sensor": f"s{j}", "unit": "m", "table": "holding", "address": 2 * j,
             "type": "float32"} for j in range(args.registers)]
    devices = [{"id": f"d{i:04d}", "type": "modbus_tcp", "site": "S", "port": port, "slave": 1 + i % 247,
                "interval_s": args.interval, "timeout_s": 2, "registers": regs} for i in range(args.devices)]
    # more than 247 devices: several endpoints (a Modbus id is one byte)
    for i, d in enumerate(devices):
        d["port"] = port + i // 247
    cfg = deployment(tmp, [{"id": "gw-bench", "heartbeat_s": 5, "devices": devices,
                            "uplink": {"batch": args.batch, "rate_per_s": 1e9, "inflight": args.inflight}}],
                     mqtt_port=broker.port, prefix="bench")
    clock = Clock()
    sources = {d.id: {f"level_m.s{j}": Ramp(j, 0.001) for j in range(args.registers)} for d in cfg.gateways[0].devices}
    ids: set[str] = set()
    arrivals = 0
    sizes: list[int] = []

    async def subscribe(ready: asyncio.Event) -> None:
        nonlocal arrivals
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="bench-sub") as c:
            await c.subscribe(topics.readings("bench"), qos=1)
            ready.set()
            async for msg in c.messages:
                batch = ReadingBatch.model_validate_json(msg.payload)
                sizes.append(len(batch.readings))
                arrivals += len(batch.readings)
                ids.update(r.id for r in batch.readings)

    out: dict = {"devices": args.devices, "registers_per_device": args.registers, "interval_s": args.interval,
                 "offered_readings_per_s": args.devices * args.registers / args.interval}
    async with simulate_devices(cfg.gateways[0].devices, sources, clock):
        ready = asyncio.Event()
        sub = asyncio.create_task(subscribe(ready))
        await ready.wait()
        agent = subprocess.Popen([sys.executable, "-m", "edge", str(tmp), "--log-level", "WARNING"], cwd=ROOT,
                                 env=os.environ | {"PYTHONPATH": str(ROOT)})
        try:
            await asyncio.sleep(args.warmup)
            n0, c0, t0 = arrivals, cpu_s(agent.pid), time.monotonic()
            rss = []
            while time.monotonic() - t0 < args.seconds:
                await asyncio.sleep(1)
                rss.append(rss_mb(agent.pid))
            n1, c1, t1 = arrivals, cpu_s(agent.pid), time.monotonic()
            depth = json.loads(subprocess.run(
                ["sqlite3", str(cfg.path("", "edge-gw-bench.outbox")), "SELECT COUNT(*) FROM outbox"],
                capture_output=True, text=True).stdout or "null")
        finally:
            agent.terminate()
            agent.wait(20)
        sub.cancel()
    out |= {
        "sustained_readings_per_s": round((n1 - n0) / (t1 - t0), 1),
        "agent_cpu_percent": round(100 * (c1 - c0) / (t1 - t0), 1),
        "agent_rss_mb_max": round(max(rss), 1),
        "agent_rss_mb_end": round(rss[-1], 1),
        "outbox_depth_at_end": depth,
        "mean_readings_per_message": round(sum(sizes) / max(1, len(sizes)), 1),
        "duplicates_seen": arrivals - len(ids),
    }
    out["backlog_drain"] = await backlog_drain(broker.port, tmp / "backlog", args.backlog, args.batch, args.inflight)
    payload_readings = max(1, round(out["mean_readings_per_message"]))
    sample = ('{"gateway":"gw-bench","readings":[' + ",".join(['{"id":"0123456789abcdef0123456789abcdef",'
              '"site":"S","sensor":"d0001.s0","quantity":"level_m","value":1.234,"unit":"m",'
              '"ts":"2026-07-14T03:05:00.123456Z","quality":"ok","gateway":"gw-bench","drill":false,"meta":{}}']
              * payload_readings) + "]}").encode()
    msgs = await raw_publish_rate(broker.port, sample, 5, args.inflight)
    out |= {"raw_broker_qos1_messages_per_s": round(msgs, 1),
            "raw_broker_readings_per_s_same_message_size": round(msgs * payload_readings, 1)}
    broker.cleanup()
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--registers", type=int, default=4)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--inflight", type=int, default=8)
    p.add_argument("--backlog", type=int, default=100_000, help="readings in the outbox for the drain figure")
    print(json.dumps(asyncio.run(main(p.parse_args())), indent=2))
