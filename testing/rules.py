"""Small builders for rule tests and benchmarks: a deployment with given sites, readings at given times; the
rules service running (``Service``) and a subscriber to its warnings (``Warnings``, ``subscribe``).

    cfg = deployment(sites=[site("RG-1", "rain", rain={"blue": {12: 40}})])
    r = reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, 12.5, at(hours=3))
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt

from rules.service import serve
from yujing import topics
from yujing.compose import Config
from yujing.model import HazardWarning, Quality, Reading
from yujing.runtime import Runtime

T0 = datetime(2026, 7, 14, 0, 0, tzinfo=UTC)
_ids = itertools.count(1)


def at(hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def site(sid: str, kind: str, area: str = "v1", name: str | None = None, **thresholds: Any) -> dict:
    doc: dict[str, Any] = {"id": sid, "name": name or sid, "kind": kind, "area": area}
    if thresholds:
        doc["thresholds"] = thresholds
    return doc


def deployment(sites: list[dict], rules: dict | None = None, gateways: list[dict] | None = None,
               data_dir: str = "var") -> Config:
    return Config.model_validate({
        "deployment": {"name": "rules-test", "data_dir": data_dir},
        "areas": [{"id": "c1", "name": "县", "tier": "county"}, {"id": "v1", "name": "村", "tier": "village",
                                                                "parent": "c1"}],
        "sites": sites,
        "rules": rules or {},
        "gateways": gateways or [],
    })


def device(did: str, sid: str, interval_s: float = 60.0, quantity: str = "level_m") -> dict:
    return {"id": did, "type": "modbus_tcp", "site": sid, "interval_s": interval_s,
            "registers": [{"quantity": quantity, "address": 0}]}


def reading(sid: str, sensor: str, quantity: str, value: float, ts: datetime, quality: Quality = Quality.OK,
            drill: bool = False, gateway: str = "", rid: str | None = None, **meta: str) -> Reading:
    return Reading(id=rid or f"r{next(_ids)}", site=sid, sensor=sensor, quantity=str(quantity), value=value, unit="",
                   ts=ts, quality=quality, drill=drill, gateway=gateway, meta=meta)


class Warnings:
    def __init__(self) -> None:
        self.got: list[HazardWarning] = []

    def of(self, key: str) -> list[HazardWarning]:
        return [w for w in self.got if w.key == key]


async def subscribe(port: int, prefix: str, into: Warnings, ready: asyncio.Event) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"w-{prefix}-{id(into)}") as c:
        await c.subscribe(topics.warnings(prefix), qos=1)
        ready.set()
        async for msg in c.messages:
            into.got.append(HazardWarning.model_validate_json(msg.payload))


class Service:
    """The rules service running on a runtime, stoppable and restartable."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Service:
        up = asyncio.Event()
        self.task = asyncio.create_task(serve(self.rt, ready=up))
        await asyncio.wait_for(up.wait(), 10)
        return self

    async def __aexit__(self, *exc) -> None:
        self.rt.stop.set()
        await asyncio.wait_for(self.task, 10)
