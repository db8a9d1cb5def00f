"""The walking skeleton, end to end over real servers (issue 2).

A simulated rain gauge (a real Modbus TCP server) is polled by the edge agent, which publishes through the
real Mosquitto; the collector writes to the real InfluxDB 1.6.7; the rules engine raises a blue rainstorm
warning once 12 h of rain reaches 50 mm; the alerts service sends an SMS through the real twilio client to
the Twilio stand-in, addressed to the site's village monitor and the village's responsible person.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from conftest import wait_for
from servers import free_port
from simulators.devices import simulate_device
from simulators.devices.values import Manual, TippingCounter
from simulators.twilio import TwilioStandIn
from yujing.clock import Clock
from yujing.compose import load_config
from yujing.runtime import Runtime
from yujing.stack import PARTS, STOP_GRACE_S, run_parts

MONITOR = "+8613900010001"
VILLAGE_HEAD = "+8613900000100"
HOUSEHOLD_GROUP_LEADER = "+8613900001000"
SPEED = 2400  # forty scenario minutes a real second: a 10-minute poll every quarter second


def write_deployment(directory: Path, *, mqtt_port: int, prefix: str, influx_url: str, db: str,
                     twilio_url: str, modbus_port: int) -> None:
    doc = {
        "deployment": {"name": "e2e", "data_dir": str(directory / "var")},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "topic_prefix": prefix},
        "collector": {"store": {"type": "influxdb_v1", "url": influx_url, "database": db},
                      "client_id": f"{prefix}-collector"},
        "rules": {"tick_s": 60},
        "alerts": {"twilio": {"base_url": twilio_url, "auth_token": {"env": "E2E_TWILIO_TOKEN"}},
                   "webhook": {"host": "127.0.0.1", "port": 0}, "client_id": f"{prefix}-alerts"},
        "duty": {"port": 0, "client_id": f"{prefix}-duty"},
        "areas": [
            {"id": "cq", "name": "重庆市", "tier": "city"},
            {"id": "zx", "name": "忠县", "tier": "county", "parent": "cq"},
            {"id": "zz", "name": "忠州街道", "tier": "township", "parent": "zx"},
            {"id": "ss", "name": "双水村", "tier": "village", "parent": "zz",
             "people": [{"name": "王建国", "role": "responsible", "phone": VILLAGE_HEAD}]},
            {"id": "ss1", "name": "双水村1组", "tier": "group", "parent": "ss",
             "people": [{"name": "李春梅", "role": "group_leader", "phone": HOUSEHOLD_GROUP_LEADER}]},
        ],
        "sites": [{"id": "RG-1", "name": "双水村雨量站", "kind": "rain", "area": "ss1",
                   "people": [{"name": "陈志强", "role": "monitor", "phone": MONITOR}]}],
        "gateways": [{"id": "gw-1", "devices": [{
            "id": "rg-1", "type": "modbus_tcp", "site": "RG-1", "host": "127.0.0.1", "port": modbus_port,
            "interval_s": 600, "registers": [{"quantity": "rain_count_mm", "unit": "mm", "table": "input",
                                              "address": 0, "type": "uint16", "scale": 0.5}]}]}],
    }
    (directory / "deployment.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


async def test_rain_gauge_reading_reaches_influxdb_and_blue_warning_sms_reaches_the_village(
        tmp_path, mosquitto, influxdb, prefix, monkeypatch, caplog):
    db = f"e2e_{prefix}"[:60]
    influxdb.create_db(db)
    monkeypatch.setenv("E2E_TWILIO_TOKEN", "e2e-token-0123456789")
    clock = Clock(SPEED)
    async with TwilioStandIn(auth_token="e2e-token-0123456789", port=0, clock=clock) as standin:
        write_deployment(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, influx_url=influxdb.url, db=db,
                         twilio_url=standin.base_url, modbus_port=free_port())
        cfg = load_config(tmp_path)
        rain_rate = Manual(0.0)  # mm/h
        gauge = TippingCounter(rate_mm_h=rain_rate, mm_per_tip=0.5)
        async with simulate_device(cfg.gateways[0].devices[0], {"rain_count_mm": gauge}, clock):
            rt = Runtime(cfg, clock)
            daemon = asyncio.create_task(run_parts(cfg, PARTS, rt=rt, handle_signals=False))
            try:
                def stored() -> list:
                    series = influxdb.query("SELECT value FROM rain_count_mm WHERE site='RG-1'", db=db)
                    return (series["results"][0].get("series") or [{}])[0].get("values", [])

                await wait_for(lambda: len(stored()) >= 2, 30, "dry readings in InfluxDB")
                assert standin.messages == []  # no rain, no warning
                # 7.5 mm/h: 50 mm within 12 h (blue) after ~6.7 h, never 50 mm within 6 h (yellow): ~10 s real
                rain_rate.set(7.5)
                await standin.wait_until(lambda: standin.messages_to(MONITOR), 60, "the monitor's SMS")
            finally:
                rt.stop.set()
                # past the CLI's own stop deadline, so a part that hangs is named in the log (and fails below)
                await asyncio.wait_for(daemon, STOP_GRACE_S + 15)
    stragglers = [r.getMessage() for r in caplog.records if "did not stop" in r.getMessage()]
    assert not stragglers, stragglers

    (sms,) = standin.messages_to(MONITOR)
    assert "暴雨蓝色预警" in sms.body and "双水村雨量站" in sms.body, sms.body
    assert "12小时累计雨量" in sms.body and "50" in sms.body, sms.body
    assert standin.messages_to(VILLAGE_HEAD), "blue goes to the village's responsible person too"
    assert not standin.calls, "a blue warning is SMS only"
    values = [v for _, v in stored()]
    assert max(values) >= 50.0, values  # the readings that crossed the threshold are in the database
    assert values == sorted(values), "a rain counter only grows: readings stored in order, once each"
