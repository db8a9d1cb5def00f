"""The edge agent end to end: simulated devices → agent → outbox → real Mosquitto → a subscriber."""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
from pathlib import Path

import pytest
from conftest import wait_for
from prometheus_client import REGISTRY
from servers import Mosquitto, free_port

from edge.service import serve
from simulators.devices import Fault, simulate_devices
from testing.devices import deployment
from testing.edge import collect, Collected
from simulators.devices.values import Constant, TippingCounter
from yujing.clock import Clock
from yujing.model import Q
from yujing.runtime import Runtime


def rain_gauge(i: int, port: int, interval_s: float = 1.0) -> dict:
    return {"id": f"rg-{i:03d}", "type": "modbus_tcp", "site": f"RG-{i:03d}", "host": "127.0.0.1", "port": port,
            "slave": i, "interval_s": interval_s, "timeout_s": 0.5, "retries": 0,
            "registers": [{"quantity": Q.RAIN_COUNT_MM.value, "unit": "mm", "table": "input", "address": 0,
                           "type": "uint16", "scale": 0.5}]}


async def test_rain_gauge_readings_reach_the_broker_with_scaled_counter_and_stable_ids(mosquitto, prefix, tmp_path):
    port = free_port()
    cfg = deployment(tmp_path, [{"id": "gw1", "heartbeat_s": 1, "devices": [rain_gauge(1, port, 0.2)]}],
                     mqtt_port=mosquitto.port, prefix=prefix)
    clock = Clock()
    rt = Runtime(cfg, clock)
    got, ready = Collected(), asyncio.Event()
    sources = {"rg-001": {Q.RAIN_COUNT_MM: TippingCounter(Constant(0), mm_per_tip=0.5, start_tips=41)}}
    async with simulate_devices(cfg.gateways[0].devices, sources, clock):
        sub = asyncio.create_task(collect(mosquitto.port, prefix, got, ready))
        await asyncio.wait_for(ready.wait(), 10)
        agent = asyncio.create_task(serve(rt))
        await wait_for(lambda: len(got.readings()) >= 3, 10, "three readings")
        await wait_for(lambda: got.status.get("gw1", {}).get("devices", {}).get("rg-001", {}).get("state") == "ok",
                       10, "heartbeat with the device ok")
        rt.stop.set()
        await asyncio.wait_for(agent, 10)
        sub.cancel()
    r = got.readings()[0]
    assert (r.quantity, r.value, r.unit, r.site, r.gateway, r.quality) == ("rain_count_mm", 20.5, "mm", "RG-001",
                                                                          "gw1", "ok")
    assert len(set(got.ids)) == len(got.ids)
    assert Path(cfg.path("", "edge-gw1.outbox")).exists()


async def test_a_device_that_stops_answering_leaves_the_other_devices_poll_intervals_unchanged(
        mosquitto, prefix, tmp_path):
    port = free_port()
    interval = 0.2
    devices = [rain_gauge(i, port, interval) | {"timeout_s": 0.5, "retries": 1, "backoff_s": 0.1,
                                                "offline_after": 2} for i in (1, 2, 3)]
    cfg = deployment(tmp_path, [{"id": "gw1", "heartbeat_s": 5, "devices": devices}],
                     mqtt_port=mosquitto.port, prefix=prefix)
    clock = Clock()
    rt = Runtime(cfg, clock)
    got, ready = Collected(), asyncio.Event()
    sources = {f"rg-00{i}": {Q.RAIN_COUNT_MM: Constant(i)} for i in (1, 2, 3)}
    async with simulate_devices(cfg.gateways[0].devices, sources, clock) as sims:
        sub = asyncio.create_task(collect(mosquitto.port, prefix, got, ready))
        await asyncio.wait_for(ready.wait(), 10)
        agent = asyncio.create_task(serve(rt))
        await wait_for(lambda: len(got.readings("rg-001")) >= 2, 10, "rg-001 answering")
        await sims.fault(Fault.HANG, "rg-001")
        hung_at = clock.now()
        await wait_for(lambda: got.status.get("gw1", {}).get("devices", {}).get("rg-001", {}).get("state")
                       == "offline", 15, "rg-001 reported offline in the heartbeat")
        await wait_for(lambda: len([r for r in got.readings("rg-002") if r.ts > hung_at]) >= 10, 10,
                       "ten more polls of rg-002")
        rt.stop.set()
        await asyncio.wait_for(agent, 10)
        sub.cancel()
    for sensor in ("rg-002", "rg-003"):
        ts = sorted(r.ts for r in got.readings(sensor) if r.ts > hung_at)
        gaps = [(b - a).total_seconds() for a, b in zip(ts, ts[1:])]
        # on schedule, and never a gap near the hung device's 0.5 s timeout (a blocked poll would show one)
        assert gaps and abs(statistics.median(gaps) - interval) < 0.02, f"{sensor} gaps {gaps}"
        assert max(gaps) < interval + 0.15, f"{sensor} gaps {gaps}"
        assert all(r.quality == "ok" for r in got.readings(sensor))
    failed = [r for r in got.readings("rg-001") if r.ts > hung_at]
    assert failed and all(r.quality == "comm-error" and math.isnan(r.value) for r in failed)
    assert got.status["gw1"]["devices"]["rg-002"]["state"] == "ok"


async def test_on_an_rs485_bus_a_silent_slave_costs_the_others_at_most_its_timeout(mosquitto, prefix, tmp_path):
    bus = str(tmp_path / "ttyRS485")
    interval, timeout = 0.3, 0.2
    devices = [{"id": f"rtu-{i}", "type": "modbus_rtu", "site": f"S{i}", "port": bus, "baudrate": 19200, "slave": i,
                "interval_s": interval, "timeout_s": timeout, "retries": 0, "offline_after": 2,
                "registers": [{"quantity": "level_m", "unit": "m", "address": 0, "type": "uint16", "scale": 0.01}]}
               for i in (1, 2, 3)]
    cfg = deployment(tmp_path / "cfg", [{"id": "gw1", "heartbeat_s": 5, "devices": devices}],
                     mqtt_port=mosquitto.port, prefix=prefix)
    clock = Clock()
    rt = Runtime(cfg, clock)
    got, ready = Collected(), asyncio.Event()
    sources = {f"rtu-{i}": {"level_m": Constant(i)} for i in (1, 2, 3)}
    async with simulate_devices(cfg.gateways[0].devices, sources, clock) as sims:
        sub = asyncio.create_task(collect(mosquitto.port, prefix, got, ready))
        await asyncio.wait_for(ready.wait(), 10)
        agent = asyncio.create_task(serve(rt))
        await wait_for(lambda: len(got.readings("rtu-2")) >= 2, 10, "rtu-2 answering")
        await sims.fault(Fault.HANG, "rtu-2")
        hung_at = clock.now()
        await wait_for(lambda: all(len([r for r in got.readings(f"rtu-{i}") if r.ts > hung_at]) >= 8 for i in (1, 3)),
                       15, "eight more polls of rtu-1 and rtu-3")
        rt.stop.set()
        await asyncio.wait_for(agent, 10)
        sub.cancel()
    for sensor in ("rtu-1", "rtu-3"):
        after = [r for r in got.readings(sensor) if r.ts > hung_at]
        assert all(r.quality == "ok" for r in after), f"{sensor} lost polls to its neighbour"
        ts = sorted(r.ts for r in after)
        gaps = [(b - a).total_seconds() for a, b in zip(ts, ts[1:])]
        assert max(gaps) < interval + timeout + 0.15, f"{sensor} gaps {gaps}"
    assert got.status["gw1"]["devices"]["rtu-2"]["state"] == "offline"


async def test_a_polled_serial_gauge_that_is_absent_or_stops_answering_reports_comm_errors_and_comes_back(
        mosquitto, prefix, tmp_path):
    # was: a gauge whose port was missing when the agent started produced no reading at all (the rules saw
    # silence, not a fault), and one whose line went away and came back was never read again
    gauge = {"id": "radar", "type": "serial_ascii", "site": "RADAR", "port": str(tmp_path / "ttyUSB0"),
             "request": "R\r\n", "pattern": r"L=(?P<level>[-0-9.]+)m", "interval_s": 0.2, "timeout_s": 0.3,
             "retries": 0, "offline_after": 2, "fields": [{"key": "level", "quantity": "level_m", "unit": "m"}]}
    cfg = deployment(tmp_path / "cfg", [{"id": "gw1", "heartbeat_s": 5, "devices": [gauge]}],
                     mqtt_port=mosquitto.port, prefix=prefix)
    clock = Clock()
    rt = Runtime(cfg, clock)
    got, ready = Collected(), asyncio.Event()

    def since(t, quality):
        return [r for r in got.readings("radar") if r.ts >= t and r.quality == quality]

    sub = asyncio.create_task(collect(mosquitto.port, prefix, got, ready))
    await asyncio.wait_for(ready.wait(), 10)
    agent = asyncio.create_task(serve(rt))
    try:
        started = clock.now()
        await wait_for(lambda: len(since(started, "comm-error")) >= 2, 10, "comm-error readings while the port is missing")
        await wait_for(lambda: got.status.get("gw1", {}).get("devices", {}).get("radar", {}).get("state")
                       == "offline", 10, "the missing gauge reported offline")
        async with simulate_devices(cfg.gateways[0].devices, {"radar": {"level_m": Constant(7.5)}}, clock) as sims:
            await wait_for(lambda: [r for r in got.readings("radar") if r.quality == "ok"], 10, "the gauge read")
            await sims.fault(Fault.HANG, "radar")
            hung_at = clock.now()
            await wait_for(lambda: since(hung_at, "comm-error"), 10, "comm-error readings while it is silent")
            await sims.fault(Fault.OFFLINE, "radar")
            gone_at = clock.now()
            await wait_for(lambda: len(since(gone_at, "comm-error")) >= 2, 10, "comm-error readings while it is gone")
            await sims.fault(Fault.NONE, "radar")
            back_at = clock.now()
            await wait_for(lambda: since(back_at, "ok"), 10, "the gauge read again once its line is back")
    finally:
        rt.stop.set()
        await asyncio.wait_for(agent, 10)
        sub.cancel()
    readings = got.readings("radar")
    assert {(r.quantity, r.unit) for r in readings} == {("level_m", "m")}
    assert all(math.isnan(r.value) for r in readings if r.quality == "comm-error")
    assert {r.value for r in readings if r.quality == "ok"} == {7.5}


@pytest.mark.timeout(90)
async def test_a_broker_outage_makes_one_line_per_gateway_not_one_per_reconnect(private_server, prefix, tmp_path,
                                                                               caplog):
    # was: a line per failed reconnect (387 in a 60 s outage with three gateways retrying every 0.5 s)
    broker = private_server(Mosquitto)
    names = ("gw1", "gw2", "gw3")
    cfg = deployment(tmp_path, [{"id": g, "heartbeat_s": 5, "uplink": {"reconnect_s": 0.02, "reconnect_max_s": 0.05}}
                                for g in names], mqtt_port=broker.port, prefix=prefix)
    caplog.set_level(logging.INFO, logger="yujing.edge.uplink")
    rt = Runtime(cfg, Clock())

    def lines(msg: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "yujing.edge.uplink" and r.getMessage() == msg]

    def failures(gw: str) -> float:
        return REGISTRY.get_sample_value("yujing_edge_link_failures_total", {"gateway": gw}) or 0.0

    agent = asyncio.create_task(serve(rt))
    try:
        await wait_for(lambda: len(lines("uplink connected")) == 3, 10, "three gateways connected")
        before = {g: failures(g) for g in names}
        await asyncio.to_thread(broker.stop)
        await wait_for(lambda: all(failures(g) >= before[g] + 20 for g in names), 30, "20 failed reconnects each")
        down = lines("uplink down")
        assert sorted(r.kv["gateway"] for r in down) == list(names)  # one each: the first failure
        await asyncio.to_thread(broker.start)
        await wait_for(lambda: len(lines("uplink back")) == 3, 20, "three gateways back")
    finally:
        rt.stop.set()
        await asyncio.wait_for(agent, 10)
    back = {r.kv["gateway"]: r.kv for r in lines("uplink back")}
    assert sorted(back) == list(names)
    for g in names:
        assert back[g]["failures"] >= 20 and back[g]["down_s"] > 0
    assert len(lines("uplink down")) == 3 and len(lines("uplink connected")) == 3
