"""A gateway speaks only for its own devices: the collector and the rules take its identity from the topic.

The broker's ACL (deploy/mosquitto/acl, shipped byte for byte by ShippedMosquitto) lets gateway gw-a publish only
on yujing/readings/gw-a; what it *says* inside is a claim. A spoofing gw-a that names gw-b, or sends a reading for
gw-b's site, or for a sensor that is none of its own, is refused by both services: counted, logged, dead-lettered,
never stored, never judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
from conftest import wait_for
from prometheus_client import REGISTRY
from shipped_broker import PASSWORDS, ShippedMosquitto, plain

from collector.service import serve as collector_serve
from collector.stores import open_store
from rules.service import serve as rules_serve
from yujing.compose import Config
from yujing.model import HazardWarning
from yujing.provenance import Refusal, Senders
from yujing.runtime import Runtime

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
GATEWAYS = [
    {"id": "gw-a", "devices": [
        {"id": "sk-a", "type": "modbus_tcp", "site": "SK-A", "registers": [{"quantity": "level_m", "address": 0}]},
        {"id": "rg.a", "type": "modbus_tcp", "site": "RG-A",  # a device id with a dot of its own
         "registers": [{"quantity": "rain_mm", "address": 0, "sensor": "x"}]}]},
    {"id": "gw-b", "devices": [
        {"id": "sk-b", "type": "modbus_tcp", "site": "SK-B", "registers": [{"quantity": "level_m", "address": 0}]}]},
]


# --- the rule, at and around each boundary --------------------------------------------------------------------

@pytest.mark.parametrize(("topic_gw", "claimed", "site", "sensor", "expected"), [
    ("gw-a", "gw-a", "SK-A", "sk-a", None),  # its own device, its own name
    ("gw-a", "", "SK-A", "sk-a", None),  # no claim: the topic names it
    ("gw-a", "gw-a", "RG-A", "rg.a", None),  # a device id holding a dot
    ("gw-a", "gw-a", "RG-A", "rg.a.x", None),  # <device>.<suffix>: one of the device's sensors
    ("gw-a", "gw-a", "RG-A", "rg.a.x.y", None),  # a suffix with a dot
    ("gw-a", "gw-a", "RG-A", "rg.ax", Refusal.NOT_ITS_DEVICE),  # a longer name is not a suffix
    ("gw-a", "gw-a", "RG-A", "rg", Refusal.NOT_ITS_DEVICE),  # a prefix of the device id is not the device
    ("gw-a", "gw-a", "RG-A", ".rg.a", Refusal.NOT_ITS_DEVICE),
    ("gw-a", "gw-a", "SK-A", "sk-a-2", Refusal.NOT_ITS_DEVICE),
    ("gw-a", "gw-b", "SK-B", "sk-b", Refusal.CLAIMS_ANOTHER),  # the spoof: another gateway's name and site
    ("gw-a", "gw-b", "SK-A", "sk-a", Refusal.CLAIMS_ANOTHER),  # its own reading under another's name
    ("gw-a", "gw-a", "SK-B", "sk-b", Refusal.NOT_ITS_DEVICE),  # its own name, the neighbour's device
    ("gw-a", "", "SK-B", "sk-b", Refusal.NOT_ITS_DEVICE),
    ("gw-a", "gw-a", "SK-B", "sk-a", Refusal.NOT_ITS_DEVICE),  # its own sensor at the neighbour's site
    ("gw-a", "gw-a", "SK-A", "sk-b", Refusal.NOT_ITS_DEVICE),  # the neighbour's sensor at its own site
    ("gw-a", "gw-a", "sk-a", "sk-a", Refusal.NOT_ITS_DEVICE),  # ids are case-sensitive
    ("gw-b", "gw-b", "SK-B", "sk-b", None),
    ("gw-c", "gw-c", "SK-A", "sk-a", Refusal.UNKNOWN_GATEWAY),  # an account that is no configured gateway
    ("yujing-central", "", "SK-A", "sk-a", Refusal.UNKNOWN_GATEWAY),
])
def test_a_reading_is_accepted_only_from_the_gateway_whose_device_it_is(topic_gw, claimed, site, sensor, expected):
    cfg = deployment(Path("/nonexistent"), 1883)
    assert Senders(cfg.gateways).refusal(topic_gw, claimed, site, sensor) == expected


def test_without_any_configured_gateway_nothing_is_checked():
    senders = Senders([])
    assert not senders.enforced
    assert senders.refusal("anyone", "someone-else", "ANY", "any") is None


# --- over the real broker with the shipped ACL ----------------------------------------------------------------

def deployment(tmp: Path, port: int) -> Config:
    return Config.model_validate({
        "deployment": {"name": "identity", "data_dir": str(tmp / "var")},
        "mqtt": {"host": "127.0.0.1", "port": port, "username": "yujing-central",
                 "password": {"env": "YUJING_TEST_MQTT_PASSWORD"}},
        "areas": [{"id": "c1", "name": "县", "tier": "county"},
                  {"id": "v1", "name": "村", "tier": "village", "parent": "c1"}],
        "sites": [{"id": s, "name": s, "kind": "reservoir", "area": "v1",
                   "thresholds": {"reservoir": {"flood_limit_m": 312.0}}} for s in ("SK-A", "SK-B")]
                 + [{"id": "RG-A", "name": "RG-A", "kind": "rain", "area": "v1"}],
        "gateways": GATEWAYS,
        "collector": {"store": {"type": "sqlite", "path": str(tmp / "readings.sqlite")},
                      "client_id": f"collector-{uuid.uuid4().hex[:8]}"},
    })


def reading(site: str, sensor: str, value: float, gateway: str | None, n: int) -> dict:
    doc = {"id": f"{site}-{sensor}-{uuid.uuid4().hex[:8]}", "site": site, "sensor": sensor, "quantity": "level_m",
           "value": value, "unit": "m", "ts": (T0 + timedelta(seconds=n)).isoformat()}
    if gateway is not None:
        doc["gateway"] = gateway
    return doc


def batch(claimed: str, *readings: dict) -> bytes:
    return json.dumps({"gateway": claimed, "readings": list(readings)}).encode()


# What a spoofing gw-a sends on its own topic, and why each must be refused. Every forged value is above the
# flood limit: had the rules judged any of them, SK-B would be under a warning.
SPOOFS: list[tuple[str, bytes]] = [
    (Refusal.CLAIMS_ANOTHER, batch("gw-b", reading("SK-B", "sk-b", 313.0, "gw-b", 1))),  # the one the county saw
    (Refusal.CLAIMS_ANOTHER, batch("gw-b", reading("SK-B", "sk-b", 313.1, None, 2))),  # the batch's claim only
    (Refusal.NOT_ITS_DEVICE, batch("gw-a", reading("SK-B", "sk-b", 313.2, "gw-a", 3))),  # its own name, B's site
    (Refusal.NOT_ITS_DEVICE, json.dumps(reading("SK-B", "sk-b", 313.3, None, 4)).encode()),  # a single reading
    (Refusal.NOT_ITS_DEVICE, batch("gw-a", reading("SK-B", "sk-a", 313.4, "gw-a", 5))),  # own sensor, B's site
    (Refusal.NOT_ITS_DEVICE, batch("gw-a", reading("SK-B", "sk-b.x", 313.5, "gw-a", 6))),  # B's sensor + suffix
]


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def counts() -> dict[tuple[str, Refusal], float]:
    return {(part, why): sample(name, {"reason": why.value}) for why in Refusal for part, name in
            (("collector", "yujing_collector_refused_readings_total"), ("rules", "yujing_rules_rejected_total"))}


@contextlib.asynccontextmanager
async def central(cfg: Config) -> AsyncIterator[None]:
    """Collector and rules on the shipped broker, as the central services run them."""
    rt_c, rt_r = Runtime(cfg), Runtime(cfg)
    rules_up = asyncio.Event()
    tasks = [asyncio.create_task(collector_serve(rt_c)), asyncio.create_task(rules_serve(rt_r, ready=rules_up))]
    try:
        await wait_for(lambda: rules_up.is_set() and sample("yujing_collector_mqtt_subscribed", {
            "client_id": cfg.collector.client_id}) == 1 or any(t.done() for t in tasks), 15, "collector and rules up")
        assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
        yield
    finally:
        rt_c.stop.set()
        rt_r.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def listen(broker: ShippedMosquitto, user: str, topic: str, into: list[tuple[str, bytes]],
                 ready: asyncio.Event) -> None:
    async with plain(broker, user, identifier=f"listen-{user}-{uuid.uuid4().hex[:6]}") as c:
        await c.subscribe(topic, qos=1)
        ready.set()
        async for m in c.messages:
            into.append((str(m.topic), bytes(m.payload)))


@pytest.fixture(scope="module")
def broker():
    server = ShippedMosquitto().start()
    yield server
    server.cleanup()


async def test_a_gateway_spoofing_its_neighbour_over_the_shipped_broker_is_refused_stored_nowhere_judged_never(
        broker, tmp_path, monkeypatch):
    monkeypatch.setenv("YUJING_TEST_MQTT_PASSWORD", PASSWORDS["yujing-central"])
    cfg = deployment(tmp_path, broker.port)
    dead: list[tuple[str, bytes]] = []
    warned: list[tuple[str, bytes]] = []
    listening = [asyncio.Event(), asyncio.Event()]
    listeners = [asyncio.create_task(listen(broker, "yujing-viewer", "yujing/deadletter/#", dead, listening[0])),
                 asyncio.create_task(listen(broker, "yujing-viewer", "yujing/warnings/#", warned, listening[1]))]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in listening)), 10)
        before = counts()
        async with central(cfg):
            async with plain(broker, "gw-a", identifier="spoofing-gw-a") as gw:
                for _, payload in SPOOFS:
                    await gw.publish("yujing/readings/gw-a", payload, qos=1)
                # a mixed batch: its own reading goes through, the neighbour's does not
                mixed = batch("gw-a", reading("SK-A", "sk-a", 300.0, "gw-a", 10), reading("SK-B", "sk-b", 313.6,
                                                                                          "gw-a", 11))
                await gw.publish("yujing/readings/gw-a", mixed, qos=1)
            # An account the ACL's pattern lets write its own readings topic, though it is no gateway.
            async with plain(broker, "yujing-central", identifier="not-a-gateway") as c:
                await c.publish("yujing/readings/yujing-central", batch("yujing-central", reading(
                    "SK-B", "sk-b", 313.7, None, 12)), qos=1)
            # The honest markers, after every forgery: gw-a's own reservoir rises, gw-b reports a calm one.
            async with plain(broker, "gw-a", identifier="honest-gw-a") as gw:
                await gw.publish("yujing/readings/gw-a", batch("gw-a", reading("SK-A", "sk-a", 312.5, "gw-a", 20)),
                                 qos=1)
            async with plain(broker, "gw-b", identifier="honest-gw-b") as gw:
                await gw.publish("yujing/readings/gw-b", batch("gw-b", reading("SK-B", "sk-b", 300.0, "gw-b", 21)),
                                 qos=1)
            async with open_store(cfg.collector.store, cfg) as store:
                async def stored() -> dict[str, list[float]]:
                    return {s: sorted(r.value for r in await store.readings(site=s)) for s in ("SK-A", "SK-B")}

                await wait_for(lambda: _has(stored, {"SK-A": [300.0, 312.5], "SK-B": [300.0]}), 15,
                               "the honest readings stored")
            await wait_for(lambda: any(t == "yujing/warnings/reservoir/SK-A" for t, _ in warned), 15,
                           "the rules' warning for gw-a's own reservoir")
            # every refusal is counted by both services, per reason
            expected = {why: sum(1 for w, _ in SPOOFS if w is why) for why in Refusal}
            expected[Refusal.NOT_ITS_DEVICE] += 1  # the mixed batch's forged half
            expected[Refusal.UNKNOWN_GATEWAY] += 1
            await wait_for(lambda: all(counts()[(p, w)] - before[(p, w)] == n for p in ("collector", "rules")
                                       for w, n in expected.items()), 10, f"refusals counted {expected}")
            await wait_for(lambda: len(dead) >= 2 * len(SPOOFS) + 4, 10, "every refused message dead-lettered twice")
        assert {t for t, _ in warned} == {"yujing/warnings/reservoir/SK-A"}  # SK-B: never a warning
        assert [HazardWarning.model_validate_json(p).values["level_m"] for _, p in warned] == [312.5]
        spoofed = [p for _, p in SPOOFS] + [mixed]
        for payload in spoofed:  # each dead-lettered as it came, under its reason, by collector and rules alike
            assert sum(1 for _, p in dead if p == payload) == 2, payload
        assert {t for t, _ in dead} == {f"yujing/deadletter/{w.value}" for w in Refusal}
    finally:
        for t in listeners:
            t.cancel()


async def _has(stored, expected: dict[str, list[float]]) -> bool:
    return await stored() == expected


async def test_a_gateway_cannot_reach_a_neighbours_topic_so_its_own_topic_is_its_identity(broker):
    """The premise of the above: the ACL drops gw-a's publish on gw-b's topic (its only way to look like gw-b)."""
    got: list[tuple[str, bytes]] = []
    ready = asyncio.Event()
    task = asyncio.create_task(listen(broker, "yujing-collector", "yujing/readings/+", got, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        async with plain(broker, "gw-a", identifier="cross-gw-a") as gw:
            await gw.publish("yujing/readings/gw-b", b"forged", qos=1)
            await gw.publish("yujing/readings/gw-a", b"marker", qos=1)
        await wait_for(lambda: ("yujing/readings/gw-a", b"marker") in got, 5, "the marker")
        assert ("yujing/readings/gw-b", b"forged") not in got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task
