"""The rules service's path (payload bytes → decode → provenance → de-dup → engine → save) against what the code
before the speed work (issue 18, round 2) made of the same messages: the same warnings, word for word, and the
same rejects.

Differential: random streams (seeded) of batched and single-reading payloads from two gateways: tipping counters
with glitches, rollovers, resets, gaps and late or re-sent readings, period rain re-sent and late, reservoir
levels, a landslide coupled to a rain site, readings a gateway may not publish, drill-marked and flagged readings,
and malformed payloads. ``tests/data/rules_golden.json`` holds what the old code (main at 38837ab) made of each
stream; regenerate it only for a change meant to alter warnings (``YUJING_GOLDEN=write``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rules.service import REJECTED, RulesService
from testing.rules import T0, deployment, device, site
from yujing.clock import Clock
from yujing.errors import PayloadError
from yujing.model import Q, Quality, Reading, ReadingBatch
from yujing.runtime import Runtime

GOLDEN = Path(__file__).parent / "data" / "rules_golden.json"
SEEDS = range(8)
REASONS = ("duplicate", "not-its-device", "claims-another-gateway", "unknown-gateway")

RAIN = {"blue": {1: 8, 3: 15}, "yellow": {1: 14, 3: 25}, "orange": {1: 20}, "red": {1: 30},
        "mechanics": {"for_s": 0, "clear_after_s": 1200}, "hysteresis_mm": 1.5, "counter_max_mm": 100.0}
LEVELS = {"flood_limit_m": 312.0, "flood_control_high_m": 313.5, "design_flood_m": 314.6, "check_flood_m": 315.4,
          "crest_m": 316.5, "crest_margin_m": 0.5, "rise_rate_m_per_h": 0.3, "rise_window_s": 1800.0}


class Steps(Clock):
    """The service's clock, moved by the stream: arrival times are part of what is compared."""

    def __init__(self) -> None:
        super().__init__(start=T0)
        self.at = T0

    def now(self) -> datetime:
        return self.at


def config(tmp: Path) -> Any:
    sites = [site("RG-1", "rain", torrent={"prepare": {1: 12}, "evacuate": {1: 22}}),
             site("RG-2", "rain"), site("RG-3", "rain"),
             site("SK-1", "reservoir", reservoir=LEVELS),
             site("HP-1", "landslide", landslide={"reference_mm_per_day": 2.0, "rain_sites": ["RG-1"],
                                                  "smoothing_s": 3600, "persist_n": 2})]
    gateways = [{"id": "gw-a", "devices": [device("rg-1", "RG-1", quantity="rain_count_mm"),
                                           device("rg-2a", "RG-2", quantity="rain_count_mm"),
                                           device("rg-2b", "RG-2", quantity="rain_count_mm")]},
                {"id": "gw-b", "devices": [device("rg-3", "RG-3", 300.0, quantity="rain_mm"),
                                           device("sk-1", "SK-1", 300.0), device("hp-1", "HP-1", 600.0,
                                                                                  quantity="displacement_mm")]}]
    return deployment(sites, rules={"rain": RAIN, "state_flush_s": 3600}, gateways=gateways, data_dir=str(tmp))


def stream(seed: int) -> list[tuple[float, str, bytes]]:
    """(arrival seconds after T0, topic, payload) in arrival order."""
    rnd = random.Random(seed)
    ids = iter(range(1, 10**9))
    out: list[tuple[float, str, bytes]] = []
    counters = {"rg-1": ("RG-1", 90.0), "rg-2a": ("RG-2", 10.0), "rg-2b": ("RG-2", 40.0)}
    count = {k: v for k, (_, v) in counters.items()}
    level, disp, t = 311.6, 100.0, 0.0
    sent: list[tuple[float, str, Reading]] = []

    def r(sid: str, sensor: str, q: str, v: float, ts: float, **kw: Any) -> Reading:
        return Reading(id=f"s{seed}-{next(ids)}", site=sid, sensor=sensor, quantity=q, value=v, unit="",
                       ts=T0 + timedelta(seconds=round(ts, 3)), **kw)

    storm = 0.0
    for step in range(500):
        t += rnd.choice((60.0, 60.0, 60.0, 120.0, 30.0)) if rnd.random() > 0.02 else rnd.uniform(1000, 4000)
        storm = max(0.0, min(1.2, storm + rnd.uniform(-0.15, 0.18)))
        batch_a: list[Reading] = []
        for sensor, (sid, _) in counters.items():
            if rnd.random() < 0.1:
                continue  # this gauge missed the poll
            count[sensor] = round(count[sensor] + rnd.uniform(0, storm) * rnd.choice((0.5, 1.0, 1.0, 2.0)), 1)
            if count[sensor] >= 100.0:
                count[sensor] = round(count[sensor] - 100.0, 1)  # the counter wraps (counter_max_mm 100)
            value = count[sensor]
            roll = rnd.random()
            if roll < 0.02:
                value = round(rnd.uniform(0, 99), 1)  # a glitch
            elif roll < 0.025:
                count[sensor] = value = round(rnd.uniform(0, 2), 1)  # the logger restarted
            batch_a.append(r(sid, sensor, Q.RAIN_COUNT_MM, value, t - rnd.uniform(0, 20)))
        batch_b: list[Reading] = []
        if step % 5 == 0:
            mm = round(rnd.uniform(0, storm * 8), 1)
            batch_b.append(r("RG-3", "rg-3", Q.RAIN_MM, mm, t))
            level = min(316.4, max(310.5, level + rnd.uniform(-0.05, 0.12)))
            batch_b.append(r("SK-1", "sk-1", Q.LEVEL_M, round(level, 3), t))
        if step % 10 == 0:
            disp += rnd.uniform(0, 0.3) * (1 + step / 100)
            batch_b.append(r("HP-1", "hp-1", Q.DISPLACEMENT_MM, round(disp, 3), t))
        roll = rnd.random()
        if roll < 0.03:
            batch_b.append(r("RG-3", "rg-3", Q.RAIN_MM, 999.0, t))  # implausible
        elif roll < 0.05:
            batch_a.append(r("RG-1", "rg-1", Q.RAIN_COUNT_MM, float("nan"), t, quality=Quality.COMM_ERROR))
        elif roll < 0.07:
            batch_a.append(r("SK-1", "sk-1", Q.LEVEL_M, 313.0, t))  # not gw-a's device: refused
        elif roll < 0.09:
            batch_b.append(r("RG-3", "rg-3", Q.RAIN_MM, 30.0, t, drill=True))
        elif roll < 0.11 and sent:
            _, gw, again = rnd.choice(sent)  # re-sent: the same id
            (batch_a if gw == "gw-a" else batch_b).append(again)
        elif roll < 0.13 and sent:
            _, gw, old = rnd.choice(sent)  # late: a new id for an old time
            late = old.model_copy(update={"id": f"s{seed}-{next(ids)}"})
            (batch_a if gw == "gw-a" else batch_b).append(late)
        for gw, batch in (("gw-a", batch_a), ("gw-b", batch_b)):
            sent += [(t, gw, x) for x in batch if x.quality is Quality.OK and not x.drill]
            topic = f"yujing/readings/{gw}"
            while batch:
                n = rnd.choice((1, 1, 2, 3, 8))
                part, batch = batch[:n], batch[n:]
                arrival = t + rnd.uniform(0, 30)
                if n == 1 and rnd.random() < 0.5:
                    payload = part[0].model_dump_json().encode()
                else:
                    payload = ReadingBatch(gateway=gw, readings=part).model_dump_json().encode()
                out.append((arrival, topic, payload))
        if rnd.random() < 0.03:
            bad = rnd.choice((b"{not json", b'{"gateway":"gw-a","readings":[]}', b'{"id":"x"}', b"[]",
                              b'{"id":"x","site":"RG-1","sensor":"rg-1","quantity":"rain_count_mm","value":"high",'
                              b'"unit":"","ts":"2026-07-14T00:00:00Z"}',
                              b'{"id":"x","site":"RG-1","sensor":"rg-1","quantity":"rain_count_mm","value":NaN,'
                              b'"unit":"","ts":"2026-07-14T00:00:00Z"}'))
            out.append((t, "yujing/readings/gw-a", bad))
    out.sort(key=lambda m: m[0])
    return out


def run(seed: int, tmp: Path) -> dict[str, list[Any]]:
    async def go() -> dict[str, list[Any]]:
        clock = Steps()
        svc = RulesService(Runtime(config(tmp), clock))
        refuse = svc._reject

        def counted(e: PayloadError, topic: str, log_it: bool = True) -> None:
            rejects.append([str(e.reason), str(e)])
            refuse(e, topic, log_it)
        svc._reject = counted  # type: ignore[method-assign]
        before = {k: REJECTED.labels(k)._value.get() for k in REASONS}
        warnings: list[Any] = []
        rejects: list[Any] = []
        for arrival, topic, payload in stream(seed):
            clock.at = T0 + timedelta(seconds=arrival)
            out = svc.on_readings(topic, payload)
            svc.commit(out)
            warnings += [json.loads(w.model_dump_json()) for w in out]
        rejects.append({k: REJECTED.labels(k)._value.get() - before[k] for k in REASONS})
        svc.save_now()
        await asyncio.gather(*svc.saves)
        svc.writer.close()
        svc.store.close()
        return {"warnings": warnings, "rejects": rejects}

    return asyncio.run(go())


@pytest.mark.parametrize("seed", SEEDS)
def test_the_service_path_makes_the_same_warnings_as_before_the_speed_work(seed, tmp_path):
    got = run(seed, tmp_path)
    if os.environ.get("YUJING_GOLDEN") == "write":
        golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        golden[str(seed)] = got
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, ensure_ascii=False, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())[str(seed)]
    assert len(got["warnings"]) == len(want["warnings"])
    for g, w in zip(got["warnings"], want["warnings"]):
        assert g == w
    assert got == want
    states = {w["state"] for w in got["warnings"]}
    assert {"issued", "upgraded", "lifted"} <= states  # the stream reaches every turn of a lifecycle
