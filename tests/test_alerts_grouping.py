"""Group, inhibit, silence, lift — and every warning sent is also a CAP 1.2 document on MQTT and HTTP."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from datetime import timedelta

import aiohttp
import aiomqtt
import pytest
from testing.alerts import warning

from alerts.config import Silence
from alerts.group import Grouper, Verdict
from testing.alerts import running_alerts
from yujing import topics
from yujing.model import Hazard, Level, WarningState, utcnow

CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
MONITOR, VIL_RESP, TOWN_RESP = "+8613911000050", "+8613911000020", "+8613911000011"


def crack(level: Level, version: int = 1, state: WarningState = WarningState.ISSUED):
    return warning(level, version, state, key="landslide:LS-GONGHE-01:crack", evidence=["裂缝计1 24小时位移 12.5 mm"])


def gnss(level: Level, version: int = 1, state: WarningState = WarningState.ISSUED):
    return warning(level, version, state, key="landslide:LS-GONGHE-01:gnss", evidence=["GNSS-2 水平位移速率 8 mm/d"])


@pytest.mark.parametrize("first, second, verdict", [
    (crack(Level.RED), gnss(Level.YELLOW), Verdict.INHIBITED),  # a red inhibits the yellow of the same site+hazard
    (crack(Level.YELLOW), gnss(Level.YELLOW), Verdict.INHIBITED),  # same level: already said
    (crack(Level.YELLOW), gnss(Level.RED), Verdict.SEND),  # a rise is sent at once
    (crack(Level.RED), crack(Level.ORANGE, 2, WarningState.DOWNGRADED), Verdict.SEND),  # the lead's own downgrade
    (crack(Level.RED), crack(Level.RED), Verdict.DUPLICATE),
    (crack(Level.RED), warning(Level.YELLOW, hazard=Hazard.RAINSTORM), Verdict.SEND),  # another hazard: own group
    # a data-loss warning is its own group: a silent sensor's yellow at the same site does not inhibit it ...
    (warning(Level.YELLOW, hazard=Hazard.EQUIPMENT, key="equipment:rg-1"),
     warning(Level.YELLOW, hazard=Hazard.EQUIPMENT, key="equipment:loss:gw-1"), Verdict.SEND),
    # ... while two device faults at one site still speak once
    (warning(Level.YELLOW, hazard=Hazard.EQUIPMENT, key="equipment:rg-1"),
     warning(Level.YELLOW, hazard=Hazard.EQUIPMENT, key="equipment:rg-2"), Verdict.INHIBITED),
])
def test_after_a_group_has_spoken(first, second, verdict):
    g = Grouper(wait_s=0)
    now = utcnow()
    assert [d.verdict for d in g.offer(first, now)] == [Verdict.SEND]
    assert [d.verdict for d in g.offer(second, now)] == [verdict]


def test_sensors_arriving_together_become_one_message_with_all_evidence():
    g = Grouper(wait_s=10)
    now = utcnow()
    assert g.offer(crack(Level.YELLOW), now)[0].verdict is Verdict.HOLD
    assert g.offer(gnss(Level.ORANGE), now + timedelta(seconds=3))[0].verdict is Verdict.HOLD
    assert g.due(now + timedelta(seconds=9)) == []
    out = g.due(now + timedelta(seconds=10))
    assert [d.verdict for d in out] == [Verdict.SEND, Verdict.GROUPED]
    assert out[0].warning.level is Level.ORANGE
    assert out[0].evidence == ("GNSS-2 水平位移速率 8 mm/d", "裂缝计1 24小时位移 12.5 mm")


def test_a_lift_goes_out_only_when_the_last_member_is_lifted_and_names_every_member():
    g = Grouper(wait_s=0)
    now = utcnow()
    g.offer(crack(Level.RED), now)
    g.offer(gnss(Level.YELLOW), now)
    assert g.offer(gnss(Level.YELLOW, 2, WarningState.LIFTED), now)[0].verdict is Verdict.INHIBITED
    lift = g.offer(crack(Level.RED, 2, WarningState.LIFTED), now)[0]
    assert lift.verdict is Verdict.SEND and set(lift.keys) == {crack(Level.RED).key, gnss(Level.RED).key}


def test_a_silence_holds_back_warnings_of_its_site_during_its_window_only():
    now = utcnow()
    s = Silence(site="LS-GONGHE-01", starts=now - timedelta(hours=1), ends=now + timedelta(hours=1), comment="维护")
    g = Grouper(wait_s=0, silences=[s])
    assert g.offer(crack(Level.RED), now)[0].verdict is Verdict.SILENCED
    assert g.offer(crack(Level.RED, 2), now + timedelta(hours=2))[0].verdict is Verdict.SEND


async def test_grouped_inhibited_and_lifted_at_the_stand_in_with_cap_on_mqtt_and_http(mosquitto, prefix, tmp_path):
    caps: list[bytes] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"cap-{prefix}") as sub:
        await sub.subscribe(topics.cap(prefix), qos=1)

        async def collect():
            async for m in sub.messages:
                caps.append(m.payload)
        collector = asyncio.create_task(collect())
        try:
            async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, speed=20.0,
                                      alerts={"grouping": {"wait_s": 20}}) as rig:
                tw = rig.twilio
                await rig.publish(crack(Level.YELLOW), gnss(Level.YELLOW))
                await tw.wait_until(lambda: tw.messages_to(TOWN_RESP), 10, "the grouped yellow")
                await asyncio.sleep(0.3)
                assert len(tw.messages_to(VIL_RESP)) == 1  # two sensors, one message
                body = tw.messages_to(VIL_RESP)[0].body
                assert "裂缝计1" in body and "GNSS-2" in body
                await rig.publish(crack(Level.YELLOW, 2, WarningState.UPGRADED).model_copy(update={"level": Level.RED}))
                await tw.wait_until(lambda: len(tw.messages_to(VIL_RESP)) == 2, 10, "the red")
                await rig.settled()
                n = len(tw.messages)
                await rig.publish(gnss(Level.YELLOW, 2, WarningState.UPGRADED).model_copy(update={"level": Level.ORANGE}))
                await tw.wait_until(lambda: any(e[3] == "inhibited" for e in rig.events()), 10, "inhibition")
                await rig.settled()
                assert len(tw.messages) == n  # the orange under a red said nothing
                told = {m.to for m in tw.messages}
                await rig.publish(gnss(Level.ORANGE, 3, WarningState.LIFTED), crack(Level.RED, 3, WarningState.LIFTED))
                await tw.wait_until(lambda: {m.to for m in tw.messages if "解除" in m.body} == told, 10, "lift to all")
                assert all(len([m for m in tw.messages_to(p) if "解除" in m.body]) == 1 for p in told)

                await wait_caps(caps, 3)
                kinds = [ET.fromstring(c).findtext(f"{CAP}msgType") for c in caps]
                assert kinds == ["Alert", "Update", "Cancel"]
                doc = ET.fromstring(caps[1])
                assert doc.findtext(f"{CAP}status") == "Actual"
                assert doc.findtext(f"{CAP}info/{CAP}severity") == "Extreme"
                assert doc.findtext(f"{CAP}references").count(",") == 2
                port = rig.live.webhook_port
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"http://127.0.0.1:{port}/cap/latest/landslide/LS-GONGHE-01.xml") as r:
                        assert r.status == 200
                        assert ET.fromstring(await r.text()).findtext(f"{CAP}msgType") == "Cancel"
                    async with http.get(f"http://127.0.0.1:{port}/cap") as r:
                        assert len(await r.json()) == 3
        finally:
            collector.cancel()


async def wait_caps(caps: list, n: int) -> None:
    for _ in range(200):
        if len(caps) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {len(caps)} CAP documents")


def test_a_group_nothing_else_can_join_is_sent_at_once_not_held():
    # a site with one device: the hold would wait for nothing (and was all of a reading's way to the phone)
    g = Grouper(wait_s=10, alone=lambda w: w.site == "LS-ONE")
    now = utcnow()
    one = warning(Level.YELLOW, key="landslide:LS-ONE", site="LS-ONE")
    assert [d.verdict for d in g.offer(one, now)] == [Verdict.SEND]
    # a warning grouped by its own key (a data loss) has no one to wait for either
    loss = warning(Level.YELLOW, hazard=Hazard.EQUIPMENT, key="equipment:loss:gw-1")
    assert [d.verdict for d in g.offer(loss, now)] == [Verdict.SEND]
    # a site with several devices is still held to gather them
    assert g.offer(crack(Level.YELLOW), now)[0].verdict is Verdict.HOLD
