"""Warnings from above: addressed to an area node, routed from it down by the policy, issued and versioned by
the issuer, published on the rules' topics and sent by alerts like any other warning."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import pytest

from alerts.config import AlertsConfig
from alerts.directory import Directory
from alerts.harness import running_alerts
from alerts.route import route
from duty.issuer import Issue, IssueError, Issuer
from duty.publisher import IssuerLink
from simulators.twilio import Behaviour
from yujing.compose import load_config
from yujing.model import Hazard, HazardWarning, Level, WarningState, utcnow

EXAMPLE = "alerts/example"
CITY_DUTY, COUNTY_DUTY, COUNTY_RESP = "+8613911000001", "+8613911000002", "+8613911000003"
TOWN_DUTY, TOWN_RESP, TOWN_DEPUTY = "+8613911000010", "+8613911000011", "+8613911000012"
VIL_RESP, VIL_DEPUTY, VIL_GRID = "+8613911000020", "+8613911000021", "+8613911000022"
G1_LEADER, G2_LEADER = "+8613911000031", "+8613911000032"
XL_RESP, XL_G1_LEADER = "+8613911000040", "+8613911000041"
MONITOR, SITE_RESP = "+8613911000050", "+8613911000051"
RUXI = ["+8613911000060", "+8613911000061", "+8613911000062", "+8613911000063", "+8613911300001"]

# an orange rainstorm over 石宝镇: both its villages' responsible people, its own office, every group leader under
# it, the village grid worker, the county and city duty offices; no site's people, no household, nobody in 汝溪镇
ORANGE_SHIBAO = {VIL_RESP, XL_RESP, TOWN_RESP, TOWN_DUTY, VIL_GRID, G1_LEADER, G2_LEADER, XL_G1_LEADER,
                 COUNTY_DUTY, CITY_DUTY}


def area_warning(area: str, level: Level, hazard: Hazard = Hazard.RAINSTORM) -> HazardWarning:
    now = utcnow()
    return HazardWarning(key=f"{hazard}:@{area}:op-1", version=1, hazard=hazard, level=level,
                         state=WarningState.ISSUED, site="", area=area, issued_at=now, updated_at=now,
                         source="operator:duty1", sender_name="忠县防汛抗旱指挥部", instruction="立即转移")


@pytest.fixture(scope="module")
def directory() -> Directory:
    return Directory.load(load_config(EXAMPLE))


def told(w: HazardWarning, directory: Directory) -> set[str]:
    routed = route(w, directory, AlertsConfig())
    assert not routed.problems
    return {r.phone for r in routed.recipients}


def test_orange_warning_addressed_to_a_township_reaches_its_villages_groups_and_the_offices_above(directory):
    assert told(area_warning("shibao", Level.ORANGE), directory) == ORANGE_SHIBAO


def test_blue_warning_addressed_to_a_village_reaches_only_that_villages_responsible_person(directory):
    assert told(area_warning("shibao.xinle", Level.BLUE), directory) == {XL_RESP}


def test_red_warning_for_the_whole_county_reaches_every_household_in_every_township(directory):
    phones = told(area_warning("county", Level.RED), directory)
    assert set(RUXI) <= phones and {TOWN_RESP, XL_G1_LEADER, "+8613911200001"} <= phones
    assert MONITOR not in phones and SITE_RESP not in phones  # no site was warned


def test_unknown_area_is_a_routing_problem_not_a_silent_nobody(directory):
    routed = route(area_warning("nowhere", Level.RED), directory, AlertsConfig())
    assert routed.recipients == [] and any("nowhere" in p for p in routed.problems)


def test_rule_warnings_keep_their_wire_form_and_warnings_from_above_round_trip():
    w = area_warning("shibao", Level.RED)
    assert HazardWarning.model_validate_json(w.model_dump_json()) == w
    rule = w.model_copy(update={"source": "rule", "sender_name": "", "instruction": "", "site": "S1", "area": ""})
    assert set(rule.model_dump()) == {"key", "version", "hazard", "level", "state", "site", "area", "rule", "title",
                                      "evidence", "values", "issued_at", "updated_at", "drill"}
    with pytest.raises(ValueError):
        HazardWarning.model_validate({**w.model_dump(), "site": "", "area": ""})


def test_issuer_versions_survive_a_reopen_and_a_known_ref_changes_nothing(tmp_path):
    cfg = load_config(EXAMPLE)
    now = utcnow()
    issuer = Issuer(tmp_path / "issued.sqlite", cfg, lambda: now)
    w, new = issuer.issue(Issue(Hazard.RAINSTORM, Level.ORANGE, "cap:bureau", area="shibao", ref="doc-1",
                                expires=now + timedelta(hours=1)))
    assert new and w.key.startswith("rainstorm:@shibao:cap-") and w.version == 1
    assert issuer.issue(Issue(Hazard.RAINSTORM, Level.ORANGE, "cap:bureau", area="shibao", ref="doc-1")) == (w, False)
    up, _ = issuer.update(w.key, level=Level.RED, ref="doc-2")
    assert (up.version, up.state, up.level) == (2, WarningState.UPGRADED, Level.RED)
    assert issuer.update(w.key, level=Level.RED, ref="doc-2") == (up, False)
    issuer.close()
    issuer = Issuer(tmp_path / "issued.sqlite", cfg, lambda: now + timedelta(hours=2))
    assert [v.version for v in issuer.history(w.key)] == [1, 2]
    [lifted] = issuer.expire()
    assert (lifted.version, lifted.state) == (3, WarningState.LIFTED) and issuer.in_force() == []
    assert issuer.lift(w.key)[1] is False  # lifting a lifted warning changes nothing
    with pytest.raises(IssueError) as e:
        issuer.issue(Issue(Hazard.RAINSTORM, Level.RED, "operator:x", area="nowhere"))
    assert e.value.code == "unknown-area"
    assert [x.version for x in issuer.unpublished()] == [1, 2, 3]


async def test_issued_upgraded_and_lifted_area_warning_reaches_the_chain_and_the_lift_everyone_told(
        mosquitto, prefix, tmp_path):
    async with running_alerts(tmp_path / "d", mqtt_port=mosquitto.port, prefix=prefix, speed=60.0,
                              alerts={"grouping": {"wait_s": 0}},
                              default=Behaviour.answers_and_presses("1", after_s=5)) as rig:
        issuer = Issuer(tmp_path / "issued.sqlite", rig.rt.config, rig.rt.clock.now)
        link = IssuerLink(rig.rt, issuer, client_id=f"duty-{prefix}")
        task = asyncio.create_task(link.run())
        try:
            tw = rig.twilio
            w, _ = issuer.issue(Issue(Hazard.RAINSTORM, Level.ORANGE, "operator:duty1", area="shibao",
                                      sender_name="忠县防汛抗旱指挥部", headline="石宝镇暴雨橙色预警",
                                      instruction="请立即组织危险区群众转移"))
            link.poke()
            await tw.wait_until(lambda: {m.to for m in tw.messages} >= ORANGE_SHIBAO, 20, "orange fan-out")
            assert {m.to for m in tw.messages} == ORANGE_SHIBAO
            body = tw.messages_to(TOWN_RESP)[0].body
            assert body.startswith("【忠县防汛抗旱指挥部】石宝镇暴雨橙色预警：请立即组织危险区群众转移")
            assert body.endswith("收到请回复1确认。")
            n = len(tw.messages)
            issuer.update(w.key, level=Level.RED, headline="石宝镇暴雨红色预警")
            link.poke()
            homes = {"+8613911200001", "+8613911200011"}
            await tw.wait_until(lambda: {m.to for m in tw.messages[n:]} >= ORANGE_SHIBAO | homes, 20, "red")
            assert not {m.to for m in tw.messages} & set(RUXI)
            everyone = {m.to for m in tw.messages}
            n = len(tw.messages)
            issuer.lift(w.key)
            link.poke()
            await tw.wait_until(lambda: {m.to for m in tw.messages[n:]} >= everyone, 20, "lift to everyone told")
            assert all("已解除" in m.body for m in tw.messages[n:])
        finally:
            rig.rt.stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
            issuer.close()


async def test_yujing_cap_documents_name_the_deployments_sender_and_are_valid_against_the_oasis_schema(
        mosquitto, prefix, tmp_path):
    import xml.etree.ElementTree as ET

    import aiomqtt

    from alerts.cap import NS
    from testing.alerts import warning
    from upstream.cap import schema
    from yujing import topics

    q = f"{{{NS}}}"
    caps: list[bytes] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"cap-{prefix}") as sub:
        await sub.subscribe(topics.cap(prefix), qos=1)
        collector = asyncio.create_task(_collect(sub, caps))
        try:
            async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                                      alerts={"grouping": {"wait_s": 0},
                                              "cap": {"sender": "yujing@test-county.example",
                                                      "sender_name": "测试县监测预警"}}) as rig:
                above = area_warning("shibao", Level.ORANGE)
                above = above.model_copy(update={"expires": above.issued_at + timedelta(hours=6),
                                                 "headline": "石宝镇暴雨橙色预警"})
                await rig.publish(warning(Level.BLUE), above)
                await rig.publish(above.model_copy(update={"version": 2, "state": WarningState.LIFTED}))
                await rig.twilio.wait_until(lambda: len(caps) >= 3, 15, "three CAP documents")
        finally:
            collector.cancel()
    docs = {ET.fromstring(c).findtext(f"{q}info/{q}headline"): c for c in caps}
    for c in caps:
        assert not list(schema().iter_errors(c.decode())), c[:200]
        root = ET.fromstring(c)
        assert root.findtext(f"{q}sender") == "yujing@test-county.example"
    rule = ET.fromstring(next(c for h, c in docs.items() if h.startswith("滑坡")))
    assert rule.findtext(f"{q}info/{q}senderName") == "测试县监测预警"
    issued = ET.fromstring(docs["石宝镇暴雨橙色预警"])
    assert issued.findtext(f"{q}info/{q}senderName") == "忠县防汛抗旱指挥部"
    assert issued.findtext(f"{q}info/{q}instruction") == "立即转移" and issued.findtext(f"{q}info/{q}expires")
    codes = [(g.findtext(f"{q}valueName"), g.findtext(f"{q}value")) for g in issued.iter(f"{q}geocode")]
    assert ("GB/T 2260", "500233009") in codes
    kinds = sorted(ET.fromstring(c).findtext(f"{q}msgType") for c in caps)
    assert kinds == ["Alert", "Alert", "Cancel"]


async def _collect(sub, caps: list[bytes]) -> None:
    async for m in sub.messages:
        caps.append(bytes(m.payload))


def test_a_long_instruction_from_above_is_cut_to_five_sms_parts_keeping_the_issuer_and_the_confirm_ask():
    from alerts.render import MAX_ABOVE_CHARS, Renderer
    from yujing.config.areas import Tier

    w = area_warning("shibao", Level.ORANGE).model_copy(update={"instruction": "请立即转移。" * 200})
    body = Renderer({}).text(w, "", [(Tier.TOWNSHIP, "石宝镇"), (Tier.COUNTY, "忠县")], ack=True)
    assert len(body) <= MAX_ABOVE_CHARS
    assert body.startswith("【忠县防汛抗旱指挥部】忠县石宝镇暴雨橙色预警发布：请立即转移。") and "…" in body
    assert body.endswith("收到请回复1确认。")
    drill = Renderer({}).text(w.model_copy(update={"drill": True}), "", [], ack=False)
    assert drill.startswith("【演练】【忠县防汛抗旱指挥部】")


async def test_a_request_to_alerts_made_while_the_broker_is_away_survives_a_restart_and_goes_out_once(
        mosquitto, prefix, tmp_path):
    import aiomqtt

    from yujing.clock import Clock
    from yujing.runtime import Runtime

    cfg = load_config(EXAMPLE)
    away = Issuer(tmp_path / "issued.sqlite", cfg, utcnow)
    IssuerLink(Runtime(cfg), away).send(f"{prefix}/commands/alerts", b'{"queued": "while away"}')
    away.close()  # the duty office stops before it ever reached the broker
    cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(update={"port": mosquitto.port})})
    rt = Runtime(cfg, Clock())
    issuer = Issuer(tmp_path / "issued.sqlite", cfg, utcnow)
    assert [t for _, t, _ in issuer.requests()] == [f"{prefix}/commands/alerts"]
    got: list[bytes] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"sub-{prefix}") as sub:
        await sub.subscribe(f"{prefix}/commands/alerts", qos=1)
        task = asyncio.create_task(IssuerLink(rt, issuer, client_id=f"link-{prefix}").run())
        try:
            async with asyncio.timeout(15):
                async for m in sub.messages:
                    got.append(bytes(m.payload))
                    break
            async with asyncio.timeout(5):
                while issuer.requests():
                    await asyncio.sleep(0.02)
        finally:
            rt.stop.set()
            await asyncio.wait_for(task, 10)
            issuer.close()
    assert got == [b'{"queued": "while away"}']
