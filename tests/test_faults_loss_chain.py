"""Issue 8, end to end: each loss a bound forces is counted, reported, raised as an equipment warning and sent.

Real parts all the way: Mosquitto, an edge agent and a collector (InfluxDB 1.6.7 when up), the rules service
and the alerts service against the Twilio stand-in, each served in-process.

- A gateway's uplink is cut (the ``Link`` proxy) while its sensor keeps reporting: the outbox's bound (20,
  drop_oldest) drops what does not fit. Once the link is back, the count in the heartbeat is the count the
  outbox dropped, the rules raise ``equipment:loss:<gateway>`` (yellow, the count in its title) and the alerts
  service tells the site's maintainer and the county's maintainers and duty office, once each.
- The collector's database is down while readings stream in: its spool's bound (drop_oldest) drops, the
  retained loss report carries the count, the rules raise ``equipment:loss:collector-<id>``. That warning has
  no site or area of the chain (the collector is central): it must still reach the county.

The sensor is a third-party gauge publishing JSON over MQTT (``type: mqtt``), so the test decides how many
readings arrive and when: a polled gauge keeps producing while the link comes back, and a drop racing the first
heartbeat would make the expected count a matter of timing.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiomqtt
import pytest
from conftest import wait_for
from prometheus_client import REGISTRY
from servers import InfluxDB1
from testing.collector import influx_count, make_config, publish, readings, running
from testing.faults import Watch, retained
from testing.faults import Link
from testing.rules import Service, Warnings, subscribe

from alerts.directory import Directory
from testing.alerts import running_alerts, write_config
from alerts.route import route
from collector.config import InfluxV1Store
from edge.service import serve as serve_edge
from yujing import topics
from yujing.clock import Clock
from yujing.compose import Config, load_config
from yujing.model import Hazard, HazardWarning, Level, WarningState, utcnow
from yujing.runtime import Runtime

ZHONGXIAN = Path(__file__).resolve().parent.parent / "config" / "zhongxian"
# alerts/example: the gauge's site LS-GONGHE-01 has a maintainer; the county has a maintainer and a duty office
SITE_MAINT, COUNTY_MAINT, COUNTY_DUTY = "+8613911000052", "+8613911000004", "+8613911000002"
SITE = "LS-GONGHE-01"
LIMIT = 20


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def central(directory: Path, port: int, prefix: str, gateways: list[dict] | None = None) -> Config:
    """The chain of alerts/example, with these gateways: what the rules (and the edge) load."""
    return load_config(write_config(directory, mqtt_port=port, prefix=prefix, twilio_url="http://127.0.0.1:9",
                                    extra={"gateways": gateways or []}))


def sms(twilio, phone: str, words: str) -> list:
    return [m for m in twilio.messages_to(phone) if words in m.body]


@pytest.mark.timeout(60)
async def test_an_outbox_overflow_behind_a_cut_link_is_counted_raised_and_sent_to_the_maintainers_once(
        mosquitto, prefix, tmp_path):
    gw, sensor_topic = "gw-loss", f"{prefix}/vendor/level"
    gateway = {"id": gw, "heartbeat_s": 1, "outbox_limit": LIMIT, "outbox_when_full": "drop_oldest",
               "uplink": {"reconnect_s": 0.1, "reconnect_max_s": 0.3, "publish_timeout_s": 1},
               "devices": [{"id": "vg-01", "type": "mqtt", "site": SITE, "topic": sensor_topic,
                            # on the gateway's side of the link: it keeps reporting while the uplink is down
                            "broker": {"host": "127.0.0.1", "port": mosquitto.port},
                            "fields": [{"quantity": "soil_moisture_pct", "value": "vwc", "unit": "%"}]}]}
    cfg = central(tmp_path / "central", mosquitto.port, prefix, [gateway])
    labels = {"gateway": gw, "policy": "drop_oldest"}
    dropped0 = metric("yujing_edge_outbox_dropped_total", labels)
    made0 = metric("yujing_edge_readings_total", {"device": "vg-01", "quality": "ok"})
    got, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix, got, ready))
    watch = Watch(mosquitto.port, prefix, gw)  # on the broker's side: what reached the centre
    watcher = asyncio.create_task(watch.run())
    await asyncio.wait_for(asyncio.gather(ready.wait(), watch.subscribed.wait()), 10)
    sent = 0

    async def report(sensor: aiomqtt.Client, n: int) -> None:
        nonlocal sent
        for _ in range(n):
            sent += 1
            await sensor.publish(sensor_topic, json.dumps({"vwc": sent % 50}), qos=1)
        await wait_for(lambda: metric("yujing_edge_readings_total", {"device": "vg-01", "quality": "ok"}) - made0 == sent,
                       10, f"the gateway to take {sent} readings")

    try:
        async with (Link(mosquitto.port) as link,
                    aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"sensor-{prefix}") as sensor):
            edge_cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(update={"port": link.port})})
            edge_rt = Runtime(edge_cfg, Clock())
            async with (running_alerts(tmp_path / "alerts", mqtt_port=mosquitto.port, prefix=prefix,
                                       alerts={"grouping": {"wait_s": 0}}) as rig, Service(Runtime(cfg, Clock()))):
                agent = asyncio.create_task(serve_edge(edge_rt))
                await wait_for(lambda: watch.beats, 10, "the gateway's first heartbeat")
                await report(sensor, 5)
                await wait_for(lambda: len(set(watch.ids)) == 5, 10, "the first readings delivered")
                await wait_for(lambda: metric("yujing_edge_outbox_depth", {"gateway": gw}) == 0, 10, "the outbox empty")

                await link.cut()
                await wait_for(lambda: got.of(f"equipment:gateway:{gw}"), 10, "the gateway's will: offline")
                await report(sensor, LIMIT + 37)  # the outbox keeps the newest LIMIT
                await wait_for(lambda: metric("yujing_edge_outbox_dropped_total", labels) - dropped0 == 37, 10,
                               "the outbox to drop what does not fit")
                assert not got.of(f"equipment:loss:{gw}"), "nothing can be known of the loss before the link is back"

                await link.restore()
                await wait_for(lambda: got.of(f"equipment:loss:{gw}"), 15, "the loss warning")
                await wait_for(lambda: len(set(watch.ids)) == 5 + LIMIT, 10, "the outbox's backlog delivered")
                beats = len(watch.beats)
                await wait_for(lambda: len(watch.beats) >= beats + 2, 10, "two more heartbeats with the same count")
                tw = rig.twilio
                await tw.wait_until(lambda: all(sms(tw, p, "37") for p in (SITE_MAINT, COUNTY_MAINT, COUNTY_DUTY)),
                                    10, "the loss SMS to the maintainers and the duty office")
                await rig.settled()
            # the rules and the alerts are gone: the agent's goodbye (offline) is no longer judged here
            edge_rt.stop.set()
            await asyncio.wait_for(agent, 15)
    finally:
        sub.cancel()
        watcher.cancel()

    # the edge: its counter, the metric and the heartbeat agree with what the outbox really dropped
    with sqlite3.connect(cfg.path("", f"edge-{gw}.outbox")) as db:
        persisted = db.execute("SELECT value FROM counters WHERE name='dropped'").fetchone()[0]
        left = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    lost = sent - len(set(watch.ids)) - left
    assert (lost, left) == (37, 0)
    assert persisted == lost == metric("yujing_edge_outbox_dropped_total", labels) - dropped0
    assert next(b["outbox_dropped"] for _, b in watch.beats if b["outbox_dropped"]) == 37, "the first report is whole"
    assert watch.beats[-1][1]["outbox_dropped"] == 37
    # the rules: one yellow warning for the loss, the count in its title, raised once though every beat repeats it
    (w,) = got.of(f"equipment:loss:{gw}")
    assert (w.level, w.state, w.hazard.value, w.site) == (Level.YELLOW, WarningState.ISSUED, "equipment", SITE)
    assert "37 条" in w.title and gw in w.title, w.title
    assert any("发送缓存已满" in e for e in w.evidence), w.evidence
    offline = got.of(f"equipment:gateway:{gw}")
    assert [x.state for x in offline] == [WarningState.ISSUED, WarningState.LIFTED], "offline (its will), then back"
    # the alerts: each of them told of the loss exactly once, by SMS; nobody else, and no household
    for phone in (SITE_MAINT, COUNTY_MAINT, COUNTY_DUTY):
        assert len(sms(tw, phone, "37")) == 1, [m.body for m in tw.messages_to(phone)]
    told = {m.to for m in tw.messages if "37" in m.body}
    assert told == {SITE_MAINT, COUNTY_MAINT, COUNTY_DUTY}, told
    assert tw.calls == []
    assert len(tw.messages) == len({(m.to, m.body) for m in tw.messages}), "no SMS sent twice"


@pytest.mark.timeout(60)
async def test_a_collector_spool_overflow_with_the_database_down_is_raised_and_reaches_the_county(
        mosquitto, private_server, prefix, tmp_path):
    influx = private_server(InfluxDB1)
    db = "loss"
    ccfg = make_config(tmp_path / "col", mosquitto.port, prefix,
                       InfluxV1Store(type="influxdb_v1", url=influx.url, database=db, timeout_s=1),
                       spool_max_readings=100, spool_full="drop_oldest", batch_size=20, flush_interval_s=0.01,
                       retry_initial_s=0.2, retry_max_s=1)
    component = f"collector-{ccfg.collector.client_id}"
    dropped0 = metric("yujing_collector_spool_dropped_total")
    async with running(ccfg):
        await publish(mosquitto.port, prefix, readings(50), per_message=10)
        await wait_for(lambda: influx_count(influx, db) == 50, 15, "the first readings stored")
        await asyncio.to_thread(influx.stop)
        spooled0 = metric("yujing_collector_spooled_total")
        await publish(mosquitto.port, prefix, readings(400, start=50), per_message=10)
        await wait_for(lambda: metric("yujing_collector_spooled_total") - spooled0 >= 400, 15, "every reading taken")
        depth = metric("yujing_collector_spool_readings")
        dropped = int(metric("yujing_collector_spool_dropped_total") - dropped0)
        assert dropped == 400 - depth and dropped >= 250, (dropped, depth)
        report = await retained(mosquitto.port, topics.loss(prefix, component), lambda p: p["dropped"] == dropped)
    assert (report["component"], report["reason"]) == (component, "spool-full")

    # the rules and the alerts come up after the loss (the report is retained): raised, and sent to the county
    cfg = central(tmp_path / "central", mosquitto.port, prefix)
    got, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix, got, ready))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        async with (running_alerts(tmp_path / "alerts", mqtt_port=mosquitto.port, prefix=prefix,
                                   alerts={"grouping": {"wait_s": 0}}) as rig, Service(Runtime(cfg, Clock()))):
            await wait_for(lambda: got.of(f"equipment:loss:{component}"), 10, "the collector's loss warning")
            tw = rig.twilio
            await tw.wait_until(lambda: sms(tw, COUNTY_DUTY, str(dropped)) and sms(tw, COUNTY_MAINT, str(dropped)),
                                10, "the loss SMS to the county's duty office and maintainers")
            await rig.settled()
    finally:
        sub.cancel()
    (w,) = got.of(f"equipment:loss:{component}")
    assert (w.level, w.state, w.hazard.value, w.site, w.area) == (Level.YELLOW, WarningState.ISSUED, "equipment",
                                                                   component, "")
    assert f"{dropped} 条" in w.title and component in w.title, w.title
    assert any("缓存队列已满" in e for e in w.evidence), w.evidence
    assert {m.to for m in tw.messages} == {COUNTY_DUTY, COUNTY_MAINT}, "the county only: no village, no household"
    assert all(len(tw.messages_to(p)) == 1 for p in (COUNTY_DUTY, COUNTY_MAINT)), "once each"
    assert tw.calls == []



def test_in_the_shipped_zhongxian_chain_a_loss_with_no_site_reaches_the_county_maintainers_and_nobody_below():
    cfg = load_config(ZHONGXIAN)
    directory, now = Directory(cfg), utcnow()
    gateway = cfg.gateways[0]

    def loss(component: str, site: str, area: str) -> HazardWarning:
        return HazardWarning(key=f"equipment:loss:{component}", version=1, hazard=Hazard.EQUIPMENT, level=Level.YELLOW,
                             state=WarningState.ISSUED, site=site, area=area, title=f"{component} 丢失 12 条监测数据",
                             issued_at=now, updated_at=now)

    central = route(loss("collector-yujing-collector", "collector-yujing-collector", ""), directory, cfg.alerts)
    site = cfg.site(gateway.devices[0].site)
    placed = route(loss(gateway.id, site.id, site.area), directory, cfg.alerts)
    # the county's maintainers and duty office: the same people as for a gateway's loss
    assert sorted((r.person.name, r.node, r.channels) for r in central.recipients) == [
        ("县应急管理局值班室", "zhongxian", ("sms",)), ("县监测预警平台运维值班", "zhongxian", ("sms",))]
    assert [r.phone for r in central.recipients] == [r.phone for r in placed.recipients]
    assert not central.problems and not placed.problems
    # a hazard warning at an unknown place is still a configuration problem, said so, and sent to nobody
    lost = route(loss("x", "NO-SUCH-SITE", "").model_copy(update={"hazard": Hazard.LANDSLIDE}), directory, cfg.alerts)
    assert not lost.recipients
    assert [p.split(" ")[0] for p in lost.problems] == ["site", "area", "nobody"]
