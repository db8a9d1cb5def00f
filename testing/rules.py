"""Small builders for rule tests and benchmarks: a deployment with given sites, readings at given times.

    cfg = deployment(sites=[site("RG-1", "rain", rain={"blue": {12: 40}})])
    r = reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, 12.5, at(hours=3))
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from yujing.compose import Config
from yujing.model import Quality, Reading

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
