"""Edge rigs: simulated rain gauges on a Modbus endpoint, and subscribers that keep what crossed the broker.

    cfg = deployment(tmp_path, [{"id": "gw", "devices": gauges(port, 4, 0.05)}], mqtt_port=..., prefix=...)
    async with simulate_devices(cfg, sources(4)): ...
    witness = Durable(port, prefix)            # a persistent-session subscriber: every arrival, duplicates too
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from pathlib import Path

import aiomqtt
from prometheus_client import REGISTRY

from simulators.devices.values import Constant, TippingCounter
from yujing import topics
from yujing.model import Q, ReadingBatch


def gauges(port: int, n: int, interval_s: float) -> list[dict]:
    return [{"id": f"dg-{i:02d}", "type": "modbus_tcp", "site": f"S{i}", "port": port, "slave": i,
             "interval_s": interval_s, "timeout_s": 0.5, "retries": 0,
             "registers": [{"quantity": Q.RAIN_COUNT_MM.value, "unit": "mm", "table": "input", "address": 0,
                            "type": "uint16", "scale": 0.5}]} for i in range(1, n + 1)]


class Durable:
    """A persistent-session subscriber that reconnects through broker restarts and keeps every arrival."""

    def __init__(self, port: int, prefix: str) -> None:
        self.port, self.prefix = port, prefix
        self.arrivals: list[str] = []  # reading ids in arrival order, duplicates included
        self.first: dict[str, tuple[str, object]] = {}  # id → (sensor, ts), in order of first arrival
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"dur-{self.prefix}",
                                          clean_session=False) as c:
                    await c.subscribe(topics.readings(self.prefix), qos=1)
                    self.subscribed.set()
                    async for msg in c.messages:
                        for r in ReadingBatch.model_validate_json(msg.payload).readings:
                            self.arrivals.append(r.id)
                            self.first.setdefault(r.id, (r.sensor, r.ts))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)


def outbox_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT id FROM outbox ORDER BY seq")]


def sources(n: int) -> dict:
    return {f"dg-{i:02d}": {Q.RAIN_COUNT_MM: TippingCounter(Constant(3600), mm_per_tip=0.5)} for i in range(1, n + 1)}


class Collected:
    """A subscriber on the real broker: every batch and reading that arrives."""

    def __init__(self) -> None:
        self.batches: list[ReadingBatch] = []
        self.ids: list[str] = []
        self.status: dict[str, dict] = {}

    def readings(self, sensor: str | None = None) -> list:
        return [r for b in self.batches for r in b.readings if sensor is None or r.sensor == sensor]


async def collect(port: int, prefix: str, into: Collected, ready: asyncio.Event) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"sub-{prefix}") as c:
        await c.subscribe(topics.readings(prefix), qos=1)
        await c.subscribe(topics.status(prefix), qos=1)
        ready.set()
        async for msg in c.messages:
            if msg.topic.matches(topics.status(prefix)):
                into.status[topics.gateway_of(str(msg.topic))] = json.loads(msg.payload)
                continue
            batch = ReadingBatch.model_validate_json(msg.payload)
            into.batches.append(batch)
            into.ids.extend(r.id for r in batch.readings)


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def accepted() -> float:
    return metric("yujing_collector_readings_in_total")


def duplicates() -> float:
    return metric("yujing_collector_duplicates_total")


def produced(outbox: Path) -> int:
    """How many readings were ever committed to the outbox (AUTOINCREMENT never reuses a seq)."""
    with sqlite3.connect(outbox) as db:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        dropped = db.execute("SELECT COALESCE(SUM(value), 0) FROM counters WHERE name = 'dropped'").fetchone()[0]
    assert dropped == 0, "the outbox dropped readings: the test is not measuring the pipeline"
    return row[0] if row else 0


def saved_since(path: Path, t: float) -> bool:
    return path.exists() and path.stat().st_mtime > t


def stored_ids(influx, db: str) -> Counter[str]:
    """Reading id → rows holding it, over every measurement (an overwritten point counts once)."""
    out: Counter[str] = Counter()
    for series in influx.query('SELECT "id" FROM /.*/', db=db)["results"][0].get("series", []):
        out.update(v[1] for v in series["values"])
    return out
