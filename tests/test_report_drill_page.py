"""The drill report renders: JSON figures computed from the timeline, HTML that opens in headless Chromium
without errors, and charts that actually draw (a screenshot is taken and inspected)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from simulators.report import Kind, Recipient, Timeline, write_report
from simulators.scenario import Expect, ExpectedWarning
from yujing.model import Hazard, Level

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def a_drill_timeline() -> Timeline:
    t0 = datetime(2026, 7, 14, 0, 0, tzinfo=timezone.utc)
    tl = Timeline(scenario={"name": "水库汛期演练", "description": "A reservoir rises past its flood-limit level."},
                  started_at=t0, speed=600, deployment="忠县 (test)")
    tl.sites["SK-1"] = {"name": "红旗水库", "kind": "reservoir", "area": "shibao.longjing", "scripted": True,
                        "lineage": ["shibao.longjing", "shibao", "zhongxian"],
                        "thresholds": {"reservoir": {"flood_limit_m": 101.0, "design_flood_m": 103.0}}}
    tl.sites["RG-1"] = {"name": "龙井村雨量站", "kind": "rain", "area": "shibao.longjing", "scripted": True}
    for i in range(0, 73):
        t = i * 300.0
        tl.point("sk-1", "SK-1", "level_m", t, 100.0 + 3.0 * i / 72)
        tl.point("rg-1", "RG-1", "rain_count_mm", t, min(i, 40) * 2.0)
    tl.add(9000, Kind.WARNING, "水库水位 蓝色预警 发布", hazard="reservoir", site="SK-1", level="blue",
           state="issued", key="reservoir:SK-1")
    tl.add(18000, Kind.WARNING, "水库水位 橙色预警 升级", hazard="reservoir", site="SK-1", level="orange",
           state="upgraded", key="reservoir:SK-1")
    tl.add(9030, Kind.NOTIFICATION, "SMS to 王建国", phone="+8613900000100", channel="sms")
    tl.add(9060, Kind.NOTIFICATION, "call to 王建国", phone="+8613900000100", channel="voice")
    tl.add(9120, Kind.CONFIRMATION, "王建国 pressed 1", phone="+8613900000100")
    tl.add(9100, Kind.NOTIFICATION, "SMS to 李户", phone="+8613900005000", channel="sms")
    tl.add(9400, Kind.NOTIFICATION, "call to 陈组长", phone="+8613900001000", channel="voice")
    tl.add(9700, Kind.ESCALATION, "陈组长 unanswered: deputy called", phone="+8613900001000")
    tl.recipients["+8613900000100"] = Recipient(
        "+8613900000100", "王建国", "responsible", "shibao.longjing", "village", first_told_t=9030, asked_t=9060,
        messages=1, calls=1, confirmed_t=9120, confirmed_via="call, pressed 1", warnings=["reservoir:SK-1#1"])
    tl.recipients["+8613900005000"] = Recipient("+8613900005000", "李户", "household", "shibao.longjing.g1",
                                                "household", first_told_t=9100, messages=1)
    tl.recipients["+8613900001000"] = Recipient("+8613900001000", "陈组长", "group_leader", "shibao.longjing.g1",
                                                "group", first_told_t=9400, asked_t=9400, calls=1)
    tl.ended_t = 21600
    return tl


def test_figures_measure_trigger_to_notification_households_and_confirmations(tmp_path: Path):
    expect = Expect(warnings=[ExpectedWarning(hazard=Hazard.RESERVOIR, site="SK-1", level=Level.ORANGE, by=20000)],
                    none_above=[ExpectedWarning(hazard=Hazard.RESERVOIR, site="SK-1", level=Level.ORANGE)])
    doc = write_report(a_drill_timeline(), expect, tmp_path)
    f = doc["figures"]
    assert f["trigger_t"] == 9000 and f["trigger_to_first_notification_s"] == 30
    assert f["trigger_to_every_household_s"] == 100
    assert f["asked_to_confirm"] == 2 and f["confirmed"] == 1 and f["never_confirmed"] == 1
    assert f["confirmed_within_5_min"] == 0.5 and f["highest_level"] == "orange"
    assert doc["passed"] is True
    on_disk = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert [e["kind"] for e in on_disk["events"]][:2] == ["warning", "notification"]
    assert set(on_disk["charts"]) == {"SK-1", "RG-1"}


def test_the_figures_count_only_people_in_the_chain_and_list_who_would_have_been_told(tmp_path: Path):
    tl = a_drill_timeline()
    # the drill liaison (in no chain) got an SMS copy first: not a trigger → notification time, not a person told
    tl.add(9010, Kind.NOTIFICATION, "SMS to 演练联络员", phone="+8613900009999", channel="sms", tier="drill")
    tl.recipients["+8613900009999"] = Recipient("+8613900009999", "演练联络员", "duty", "drill", "drill",
                                                first_told_t=9010, messages=1)
    for i, (tier, calls) in enumerate([("village", 1), ("household", 0), ("county", 1)]):
        tl.would_have_been_told[f"+861390000700{i}"] = Recipient(
            f"+861390000700{i}", f"未参演{i}", "responsible", "shibao", tier, first_told_t=9000 + i, messages=1,
            calls=calls, asked_t=9000 + i if calls else None, warnings=["reservoir:SK-1#1"])
    doc = write_report(tl, Expect(), tmp_path)
    f = doc["figures"]
    assert f["people_told"] == 3 and f["observers_told"] == 1 and f["would_have_been_told"] == 3
    assert f["trigger_to_first_notification_s"] == 30, "the observer's copy is not the chain's first notification"
    on_disk = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert [(r["tier"], r["calls"], r["asked_to_confirm"]) for r in on_disk["would_have_been_told"]] == \
        [("village", 1, True), ("household", 0, False), ("county", 1, True)]
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Would have been told" in html and "未参演2" in html


def test_a_drill_is_timed_from_the_first_warning_that_reached_someone_taking_part(tmp_path: Path):
    """A warning at a site whose chain takes no part tells nobody in a drill: it must not start the clock."""
    tl = a_drill_timeline()
    for e in tl.events:
        if e.kind is Kind.WARNING:
            e.data["participants_told"] = True
    tl.add(3000, Kind.WARNING, "暴雨蓝色预警 发布 · 别村", hazard="rainstorm", site="RG-9", level="blue",
           state="issued", key="rainstorm:RG-9", participants_told=False)
    f = write_report(tl, Expect(), tmp_path)["figures"]
    assert f["trigger_t"] == 9000 and f["trigger_to_first_notification_s"] == 30
    # and a drill that knows nothing of who was reached times from the first warning, as before
    for e in tl.events:
        e.data.pop("participants_told", None)
    assert write_report(tl, Expect(), tmp_path)["figures"]["trigger_t"] == 3000


def test_an_unmet_expectation_fails_the_drill(tmp_path: Path):
    expect = Expect(warnings=[ExpectedWarning(hazard=Hazard.RESERVOIR, site="SK-1", level=Level.RED)])
    doc = write_report(a_drill_timeline(), expect, tmp_path)
    assert doc["passed"] is False and doc["expectations"][0]["detail"] == "no such warning"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (tests/install-servers.sh installs it)")
def test_the_html_report_opens_in_headless_chromium_and_its_charts_render(tmp_path: Path):
    from matplotlib.image import imread

    write_report(a_drill_timeline(), Expect(), tmp_path / "report")
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1400,2400", f"--screenshot={shot}", (tmp_path / "report" / "report.html").as_uri()],
        capture_output=True, text=True, timeout=90)
    assert shot.exists(), run.stderr[-2000:]
    problems = [ln for ln in run.stderr.splitlines()
                if "CONSOLE" in ln or "Uncaught" in ln or "ERR_FILE_NOT_FOUND" in ln or "Failed to load" in ln]
    assert problems == []
    img = imread(shot)[:, :, :3]
    assert img.std() > 0.05, "the page is blank"
    # the reservoir's level line is matplotlib's first colour (#1f77b4): present only if the chart loaded
    c0 = (abs(img[:, :, 0] - 0x1F / 255) < 0.12) & (abs(img[:, :, 1] - 0x77 / 255) < 0.12) & \
         (abs(img[:, :, 2] - 0xB4 / 255) < 0.12)
    assert c0.sum() > 200, "the chart images did not render"


async def test_every_sms_and_call_in_the_report_carries_the_words_sent_even_a_call_nobody_answered(
        mosquitto, prefix, tmp_path):
    """A drill's call is written down when it is placed, before (or without) anyone answering: its entry still
    carries what the call says, as the SMS entries carry their text."""
    from conftest import wait_for

    from simulators.calls import CallLog
    from simulators.recorder import Recorder
    from simulators.twilio import Behaviour
    from testing.alerts import running_alerts, warning
    from testing.chain import G1_LEADER, HOME_G1, chain_people, example

    people = chain_people(example(tmp_path), G1_LEADER, HOME_G1)
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, speed=60.0, drill_recipients=people,
                              default=Behaviour.answers_and_presses("1", 5),
                              behaviours={G1_LEADER: Behaviour.never_answers()},
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        tl = Timeline(scenario={"name": "t"}, started_at=rig.rt.clock.now(), speed=60.0)
        rec = Recorder(tl, rig.rt.config)
        calls = CallLog(rig.twilio, rec, rig.rt.clock)
        await rig.publish(warning(Level.RED, drill=True))

        def logged() -> bool:
            calls.update()
            voice = [e for e in tl.events if e.kind is Kind.NOTIFICATION and e.data["channel"] == "voice"]
            return len(voice) >= 2 and any(e.kind is Kind.UNANSWERED for e in tl.events)

        await wait_for(logged, 20, "both calls written down, the leader's unanswered")
    notes = [e for e in tl.events if e.kind is Kind.NOTIFICATION]
    assert {(e.data["phone"], e.data["channel"]) for e in notes} >= {(G1_LEADER, "voice"), (HOME_G1, "voice"),
                                                                     (HOME_G1, "sms")}
    for e in notes:
        assert e.data["text"].startswith("【演练】") and "红色预警" in e.data["text"], e
        assert e.data["text"][:20] in e.summary
    leader = next(e for e in notes if e.data["phone"] == G1_LEADER and e.data["channel"] == "voice")
    assert "按1" in leader.data["text"] or "确认" in leader.data["text"], "the 叫应 prompt is part of what is said"
    doc = write_report(tl, Expect(), tmp_path / "report")
    assert all(e["text"] for e in doc["events"] if e["kind"] == "notification")
