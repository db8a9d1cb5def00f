"""The collector on a bare deployment, and readings to publish to it: for the collector, fault and chain tests.

    cfg = make_config(tmp_path, mosquitto.port, prefix, SqliteStore(type="sqlite"))
    async with running(cfg):
        await publish(mosquitto.port, prefix, readings(100), per_message=10)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiomqtt
from prometheus_client import REGISTRY

from collector.config import CollectorConfig
from collector.service import serve
from testing.waits import wait_for
from yujing import topics
from yujing.compose import Config
from yujing.model import Reading, ReadingBatch, new_id
from yujing.runtime import Runtime

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)  # within VictoriaMetrics retention


def make_config(tmp_path: Path, port: int, prefix: str, store, **collector) -> Config:
    cfg = Config()
    return cfg.model_copy(update={
        "mqtt": cfg.mqtt.model_copy(update={"port": port, "topic_prefix": prefix}),
        "deployment": cfg.deployment.model_copy(update={"data_dir": str(tmp_path / "var"), "name": prefix}),
        "collector": CollectorConfig(store=store, client_id=f"c-{prefix}", **collector),
    })


def readings(n: int, site: str = "RG-1", start: int = 0, gateway: str = "gw-1") -> list[Reading]:
    return [Reading(id=f"{site}-{i}", site=site, sensor="rg", quantity="rain_mm", value=float(i % 50) / 10,
                    unit="mm", ts=T0 + timedelta(seconds=i), gateway=gateway) for i in range(start, start + n)]


async def publish(port: int, prefix: str, items: list[Reading], per_message: int = 1, gateway: str = "gw-1") -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"p-{new_id()}") as c:
        topic = topics.readings(prefix, gateway)
        for i in range(0, len(items), per_message):
            chunk = items[i:i + per_message]
            payload = (chunk[0].model_dump_json() if per_message == 1
                       else ReadingBatch(gateway=gateway, readings=chunk).model_dump_json())
            await c.publish(topic, payload, qos=1)


async def publish_raw(port: int, prefix: str, payloads: list[bytes], gateway: str = "gw-1") -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"p-{new_id()}") as c:
        for p in payloads:
            await c.publish(topics.readings(prefix, gateway), p, qos=1)


@contextlib.asynccontextmanager
async def running(cfg: Config, **kw) -> AsyncIterator[Runtime]:
    rt = Runtime(cfg)
    task = asyncio.create_task(serve(rt, **kw))
    try:
        await wait_for(lambda: task.done() or subscribed(cfg), 10, "collector subscribed")
        yield rt
    finally:
        rt.stop.set()
        await asyncio.wait_for(task, 30)


def subscribed(cfg: Config) -> bool:
    return REGISTRY.get_sample_value("yujing_collector_mqtt_subscribed", {"client_id": cfg.collector.client_id}) == 1


def influx_count(influxdb, db: str, measurement: str = "rain_mm") -> int:
    res = influxdb.query(f'SELECT COUNT("id") FROM "{measurement}"', db=db)["results"][0]
    series = res.get("series")
    return series[0]["values"][0][1] if series else 0


async def stream(port: int, prefix: str, items, rate_per_s: float, site_gateway: str = "gw-1") -> None:
    """Publish at about ``rate_per_s`` messages a second (one reading per message)."""
    step = 20
    for i in range(0, len(items), step):
        await publish(port, prefix, items[i:i + step], gateway=site_gateway)
        await asyncio.sleep(step / rate_per_s)
