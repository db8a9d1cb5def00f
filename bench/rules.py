"""Rules engine throughput: readings evaluated per second, in memory, with SQLite commits, and through the service.

    python bench/rules.py [--gauges 300] [--hours 24] [--batch 50] [--mqtt]

A deployment of N rain gauges (tipping counters, one reading a minute, with rain so windows fill),
N/3 reservoirs (levels) and N/3 landslide crack meters, under gateways of ``--per-gateway`` devices each (as a
real deployment configures them, so the service checks every reading's provenance), replayed in time order.
Prints JSON, each figure with the process's CPU seconds beside the wall clock (``readings_per_cpu_s``: on a
shared machine the wall clock is mostly the neighbours' noise):

- ``in_memory`` and ``sqlite``: the engine alone (``Engine.feed``, ``Engine.commit`` every ``--batch``);
- ``service_path``: what the rules service does with each MQTT message, without the broker: each gateway's
  ReadingBatch JSON of ``--batch`` readings on its own topic through ``RulesService.on_readings`` (decode, check
  the gateway may publish it, de-duplicate, feed) and ``RulesService.commit`` (state, warnings and the reading ids
  snapshotted on the event loop and written by the service's writer thread in one transaction when warnings are
  issued, else every ``ACK_WINDOW / 2`` messages or ``rules.state_flush_s``);
- ``mqtt`` (with ``--mqtt``): the real thing: the messages queued in a real Mosquitto for the service's persistent
  session, then ``RulesService.run`` started and timed until every reading is judged, its state saved and every
  message acknowledged (the broker holds nothing more for the session). The rules process's CPU seconds and the
  broker's are given apart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rules.engine import Engine
from rules.store import StateStore
from testing.rules import at, deployment, device, reading, site
from yujing.model import Q


PER_GATEWAY = 10


def build(n: int, per_gateway: int = PER_GATEWAY, **deployment_kw):
    sites = [site(f"RG-{i}", "rain") for i in range(n)]
    sites += [site(f"SK-{i}", "reservoir", reservoir={"flood_limit_m": 312.0, "design_flood_m": 314.0})
              for i in range(n // 3)]
    sites += [site(f"HP-{i}", "landslide", landslide={"reference_mm_per_day": 2.0}) for i in range(n // 3)]
    devices = [device(f"rg-{i}", f"RG-{i}", quantity="rain_count_mm") for i in range(n)]
    devices += [device(f"sk-{i}", f"SK-{i}", 300.0) for i in range(n // 3)]
    devices += [device(f"hp-{i}", f"HP-{i}", 300.0, quantity="displacement_mm") for i in range(n // 3)]
    gateways = [{"id": f"gw-{k // per_gateway}", "devices": devices[k:k + per_gateway]}
                for k in range(0, len(devices), per_gateway)]
    return deployment(sites, gateways=gateways, **deployment_kw)


def gateway_of(cfg) -> dict[str, str]:
    return {d.id: g.id for g in cfg.gateways for d in g.devices}


def messages(cfg, readings, batch: int) -> list[tuple[str, bytes]]:
    """(topic, ReadingBatch JSON): each gateway's readings in batches of ``batch``, sent when the last one is read."""
    from yujing.model import ReadingBatch

    owner = gateway_of(cfg)
    open_: dict[str, list] = {}
    out = []
    for r in readings:
        gw = owner[r.sensor]
        held = open_.setdefault(gw, [])
        held.append(r)
        if len(held) == batch:
            out.append((f"yujing/readings/{gw}", ReadingBatch(gateway=gw, readings=held).model_dump_json().encode()))
            open_[gw] = []
    out += [(f"yujing/readings/{gw}", ReadingBatch(gateway=gw, readings=held).model_dump_json().encode())
            for gw, held in open_.items() if held]
    return out


def series(n: int, hours: int):
    for m in range(hours * 60):
        for i in range(n):
            yield reading(f"RG-{i}", f"rg-{i}", Q.RAIN_COUNT_MM, round(m * (0.05 + 0.002 * (i % 50)), 1),
                          at(minutes=m, seconds=i % 60))
        if m % 5 == 0:
            for i in range(n // 3):
                yield reading(f"SK-{i}", f"sk-{i}", Q.LEVEL_M, 311.0 + 0.001 * m, at(minutes=m))
                yield reading(f"HP-{i}", f"hp-{i}", Q.DISPLACEMENT_MM, 100 + 0.002 * m + 0.01 * math.sin(m),
                              at(minutes=m))


def run(n: int, hours: int, batch: int, store_path: Path | None, flush_s: float = 10.0) -> dict:
    """Commit every ``batch`` readings (lifecycles + outbox), pack state every ``flush_s``, as the service does."""
    cfg = build(n)
    readings = list(series(n, hours))
    store = StateStore(store_path) if store_path else None
    eng = Engine(cfg, store)
    warnings = 0
    t0, c0 = time.perf_counter(), time.process_time()
    pending = []
    flushed = time.monotonic()
    for k, r in enumerate(readings, 1):
        pending += eng.feed(r)
        if k % batch == 0:
            packs_too = time.monotonic() - flushed >= flush_s
            if packs_too:
                flushed = time.monotonic()
            eng.commit(pending, packs_too=packs_too)
            warnings += len(pending)
            pending = []
    eng.commit(pending)
    warnings += len(pending)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    if store:
        store.close()
    return {"readings": len(readings), "seconds": round(dt, 3), "readings_per_s": round(len(readings) / dt),
            "cpu_s": round(cpu, 3), "readings_per_cpu_s": round(len(readings) / cpu),
            "warnings": warnings, "persisted": store_path is not None, "commit_every": batch,
            "pack_state_every_s": flush_s}


def run_service(n: int, hours: int, batch: int, directory: Path, per_gateway: int = PER_GATEWAY) -> dict:
    """The service's own path per message, minus the broker (no PUBACKs: acks are only counted)."""
    import asyncio

    from rules.service import RulesService
    from yujing.clock import Clock
    from yujing.runtime import Runtime

    cfg = build(n, per_gateway, data_dir=str(directory))
    readings = list(series(n, hours))
    payloads = messages(cfg, readings, batch)

    class Acked:  # what receive() keeps per message: acknowledged by the save that covers it (no broker here)
        def ack(self) -> None:
            pass

    async def go() -> tuple[float, float, int, int]:
        svc = RulesService(Runtime(cfg, Clock()))
        saves, issued = 0, 0
        real_write = svc.store.write

        def counted(rows) -> None:  # in the service's writer thread
            nonlocal saves
            saves += 1
            real_write(rows)
        svc.store.write = counted  # type: ignore[method-assign]
        t0, c0 = time.perf_counter(), time.process_time()
        for topic, payload in payloads:
            svc.acks.append(Acked())
            out = svc.on_readings(topic, payload)
            issued += len(out)
            svc.commit(out)
            if svc.saves:  # the service's loop turns between messages: a finished write releases its acks
                await asyncio.sleep(0)
        svc.save_now()
        await asyncio.gather(*svc.saves)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        svc.writer.close()
        svc.store.close()
        return dt, cpu, saves, issued

    dt, cpu, saves, issued = asyncio.run(go())
    return {"readings": len(readings), "seconds": round(dt, 3), "readings_per_s": round(len(readings) / dt),
            "cpu_s": round(cpu, 3), "readings_per_cpu_s": round(len(readings) / cpu),
            "warnings": issued, "saves": saves, "messages": len(payloads), "readings_per_message": batch}


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of another process (the broker), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_mqtt(n: int, hours: int, batch: int, directory: Path, per_gateway: int = PER_GATEWAY) -> dict:
    """The service as it runs: a real Mosquitto, its persistent session holding the backlog, manual PUBACKs."""
    import asyncio
    import importlib.util

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from rules import service as rules_service
    from yujing.clock import Clock
    from yujing.runtime import Runtime

    spec = importlib.util.spec_from_file_location("yujing_test_servers",
                                                  Path(__file__).resolve().parent.parent / "tests" / "servers.py")
    servers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(servers)  # type: ignore[union-attr]
    broker = servers.Mosquitto(autosave_s=60).start()
    try:
        cfg = build(n, per_gateway, data_dir=str(directory))
        cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(update={"port": broker.port})})
        readings = list(series(n, hours))
        payloads = messages(cfg, readings, batch)

        async def session_once() -> None:  # the service's persistent session exists before the backlog is sent
            rt = Runtime(cfg, Clock())
            svc = rules_service.RulesService(rt)
            task = asyncio.create_task(svc.run())
            await asyncio.wait_for(svc.ready.wait(), 30)
            rt.stop.set()
            await asyncio.wait_for(task, 30)
        asyncio.run(session_once())

        pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-rules-pub")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        infos = [pub.publish(topic, payload, qos=1) for topic, payload in payloads]
        for info in infos:
            info.wait_for_publish(60)
        pub.loop_stop()
        pub.disconnect()

        async def go() -> tuple[float, float, float]:
            rt = Runtime(cfg, Clock())
            svc = rules_service.RulesService(rt)
            judged = rules_service.READINGS._value.get()
            b0, t0, c0 = _cpu_of(broker.proc.pid), time.perf_counter(), time.process_time()
            task = asyncio.create_task(svc.run())
            while rules_service.READINGS._value.get() - judged < len(readings):
                await asyncio.sleep(0.02)
                if task.done():
                    task.result()
                    raise RuntimeError("the rules service stopped before judging the backlog")
            rt.stop.set()  # the last save, and the PUBACKs it releases, on the way out
            await task
            return time.perf_counter() - t0, time.process_time() - c0, _cpu_of(broker.proc.pid) - b0
        dt, cpu, broker_cpu = asyncio.run(go())

        left: list[bytes] = []  # what the broker still holds for the session: nothing, if every message was acked
        async def drain() -> None:
            rt = Runtime(cfg, Clock())
            svc = rules_service.RulesService(rt)
            on = svc.on_readings
            svc.on_readings = lambda topic, payload: (left.append(payload), on(topic, payload))[1]  # type: ignore
            task = asyncio.create_task(svc.run())
            await asyncio.wait_for(svc.ready.wait(), 30)
            await asyncio.sleep(1.0)  # a held backlog is sent right after CONNACK
            rt.stop.set()
            await task
        asyncio.run(drain())
    finally:
        broker.cleanup()
    return {"readings": len(readings), "seconds": round(dt, 3), "readings_per_s": round(len(readings) / dt),
            "cpu_s": round(cpu, 3), "readings_per_cpu_s": round(len(readings) / cpu),
            "broker_cpu_s": round(broker_cpu, 3), "messages": len(payloads), "readings_per_message": batch,
            "redelivered_after": len(left)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gauges", type=int, default=300)
    p.add_argument("--hours", type=int, default=24)
    p.add_argument("--batch", type=int, default=50, help="readings per commit (an MQTT batch)")
    p.add_argument("--per-gateway", type=int, default=PER_GATEWAY, help="devices per gateway")
    p.add_argument("--mqtt", action="store_true", help="also the service on a real Mosquitto")
    p.add_argument("--only", choices=("service", "mqtt"), help="only this figure")
    a = p.parse_args()
    out: dict = {"gauges": a.gauges, "hours": a.hours}
    if a.only is None:
        out["in_memory"] = run(a.gauges, a.hours, a.batch, None)
        with tempfile.TemporaryDirectory() as d:
            out["sqlite"] = run(a.gauges, a.hours, a.batch, Path(d) / "rules.state.sqlite")
    if a.only in (None, "service"):
        with tempfile.TemporaryDirectory() as d:
            out["service_path"] = run_service(a.gauges, a.hours, a.batch, Path(d), a.per_gateway)
    if a.mqtt or a.only == "mqtt":
        with tempfile.TemporaryDirectory() as d:
            out["mqtt"] = run_mqtt(a.gauges, a.hours, a.batch, Path(d), a.per_gateway)
    out["load_avg"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
