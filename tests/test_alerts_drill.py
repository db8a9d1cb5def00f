"""Drills: routed like the real warning but only to the people taking part, marked 【演练】 everywhere, a log of
their own, never promoted."""

from __future__ import annotations

import json

import pytest
from conftest import wait_for
from testing.alerts import running_alerts, warning
from testing.chain import (CITY_DUTY, COUNTY_DUTY, DRILL_HOME, DRILL_OFFICER, G1_LEADER, G2_LEADER, HOME_G1,
                           HOME_G1_SMS_ONLY, HOME_XINLE, LIAISON, MONITOR, SITE_RESP, TOWN_DUTY, VILLAGE_RESP,
                           XINLE_RESP, chain_people, example)

from alerts.directory import Directory
from alerts.nflog import NotificationLog
from alerts.route import Recipient, drill_route, route
from simulators.twilio import Behaviour
from yujing.config.people import Channel
from yujing.errors import StoreError
from yujing.model import Level

# Per level, what each participant hears in a drill: (channels, asked to confirm). Participants missing from
# a row are told nothing at that level, exactly as the real warning would not tell them.
XINLE_MONITOR = "+8613911000060"  # another site (新乐村雨量站), another village, the same township
TAKING_PART = [MONITOR, TOWN_DUTY, G1_LEADER, G2_LEADER, HOME_G1, HOME_XINLE, XINLE_RESP, XINLE_MONITOR, LIAISON]
CASES = [
    # blue: the site and the village by SMS only, nobody asked to confirm
    (Level.BLUE, {MONITOR: ("sms", False), LIAISON: ("sms", False)}),
    # yellow: + the township, still SMS only (just below the 叫应 boundary)
    (Level.YELLOW, {MONITOR: ("sms", False), TOWN_DUTY: ("sms", False), LIAISON: ("sms", False)}),
    # orange: calls and 叫应 for the officials; every group leader of the site's village (not only the site's
    # group), none of the next village's; no households yet
    (Level.ORANGE, {MONITOR: ("sms voice", True), TOWN_DUTY: ("sms voice", True), G1_LEADER: ("sms voice", True),
                    G2_LEADER: ("sms voice", True), LIAISON: ("sms", False)}),
    # red: + the households under the site's village (not the neighbouring village's), SMS and voice as they have
    (Level.RED, {MONITOR: ("sms voice", True), TOWN_DUTY: ("sms voice", True), G1_LEADER: ("sms voice", True),
                 G2_LEADER: ("sms voice", True), HOME_G1: ("sms voice", False), LIAISON: ("sms", False)}),
]


@pytest.mark.parametrize("level, told", CASES, ids=[c[0].value for c in CASES])
def test_a_drill_routes_like_the_real_warning_restricted_to_its_participants(tmp_path, level, told):
    cfg = example(tmp_path)
    d = Directory.load(cfg)
    people = chain_people(cfg, *[p for p in TAKING_PART if p != LIAISON]) + list(cfg.alerts.drill.recipients)
    real = route(warning(level, drill=True), d, cfg.alerts).recipients
    cut = drill_route(real, people, d)
    got = {r.phone: (" ".join(c.value for c in r.channels), r.ack) for r in cut.told}
    assert got == told
    # everyone else the real warning names is written down as would-have-been-told, with what they would get
    assert {r.phone for r in cut.untold} == {r.phone for r in real} - set(told)
    assert {r.phone: r.channels for r in cut.untold} == {r.phone: r.channels for r in real if r.phone not in told}
    assert not {XINLE_RESP, HOME_XINLE, XINLE_MONITOR} & (set(got) | {r.phone for r in cut.untold}), \
        "another village's people and another site's are not in this warning's chain"


async def test_a_blue_drill_texts_only_the_participants_the_chain_names_and_calls_nobody(mosquitto, prefix, tmp_path):
    people = chain_people(example(tmp_path), MONITOR, TOWN_DUTY, HOME_G1)
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, speed=60.0,
                              default=Behaviour.answers_and_presses("1", 5), drill_recipients=people,
                              alerts={"grouping": {"wait_s": 0}, "drill": {"recipients": [DRILL_OFFICER]}}) as rig:
        tw = rig.twilio
        await rig.publish(warning(Level.BLUE, drill=True))
        await tw.wait_until(lambda: {m.to for m in tw.messages} >= {MONITOR, LIAISON}, 10, "the drill's SMS")
        await rig.settled()
        assert {m.to for m in tw.messages} == {MONITOR, LIAISON}  # not the township, not the household
        assert tw.calls == [], "a blue warning is SMS-only: a drill of it calls nobody"
        assert all(m.body.startswith("【演练】") for m in tw.messages)
        untold = [json.loads(e[4]) for e in rig.events("drill", "drill-untold")]
        assert [{r[0] for r in u["recipients"]} for u in untold] == [{SITE_RESP, VILLAGE_RESP}]
        assert rig.pipeline("real").nflog.timeline.all() == []


async def test_a_red_drill_calls_asks_and_escalates_like_the_real_one_but_only_within_the_drill(
        mosquitto, prefix, tmp_path):
    people = chain_people(example(tmp_path), G1_LEADER, HOME_G1, HOME_XINLE)
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, speed=120.0,
                              default=Behaviour.answers_and_presses("1", 5), drill_recipients=people,
                              behaviours={G1_LEADER: Behaviour.never_answers()},
                              alerts={"grouping": {"wait_s": 0}, "drill": {"recipients": [DRILL_HOME]}}) as rig:
        tw = rig.twilio
        await rig.publish(warning(Level.RED, drill=True))
        # the group leader never answers: recall, no deputy in the group, then up to the village (not taking part)
        await tw.wait_until(lambda: len(tw.calls_to(G1_LEADER)) >= 2, 30, "the recall of the group leader")
        await wait_for(lambda: any(json.loads(e[4])["attempt"] == 4 for e in rig.events("drill", "drill-untold")),
                       30, "the step up the chain, written down")
        await rig.settled()
        assert {c.to for c in tw.calls} == {G1_LEADER, HOME_G1}
        assert {m.to for m in tw.messages} == {G1_LEADER, HOME_G1, "+8613911900002"}  # + the observer's copy
        assert tw.messages_to(HOME_XINLE) == [] and tw.calls_to(VILLAGE_RESP) == []
        assert all(m.body.startswith("【演练】") for m in tw.messages)
        assert all("<Say" in c.twiml and "【演练】" in c.twiml for c in tw.calls)
        leader_call = tw.calls_to(G1_LEADER)[0]
        assert "<Gather" in leader_call.twiml and "k=drill" in leader_call.twiml
        assert "<Gather" not in tw.calls_to(HOME_G1)[0].twiml, "households are told, not asked"
        untold = {json.loads(e[4])["attempt"]: {r[0] for r in json.loads(e[4])["recipients"]}
                  for e in rig.events("drill", "drill-untold")}
        assert untold[4] == {VILLAGE_RESP}  # step 3 (up): the village, not taking part
        assert {HOME_G1_SMS_ONLY, COUNTY_DUTY, CITY_DUTY, TOWN_DUTY} <= untold[1] and HOME_XINLE not in untold[1]
        assert [e[3] for e in rig.events("drill") if e[2] == G1_LEADER and e[3].startswith("escalate")] == \
            ["escalate-recall", "escalate-deputy-nobody", "escalate-up"]
        assert rig.pipeline("real").nflog.timeline.all() == []
        cap = rig.state["caps"].latest[("landslide", "LS-GONGHE-01")]
        assert "<status>Exercise</status>" in cap


async def test_a_drill_never_reaches_someone_not_taking_part_whatever_asks(mosquitto, prefix, tmp_path):
    """The last guard: recipients handed to the drill pipeline from anywhere are checked against the drill."""
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}, "drill": {"recipients": [DRILL_HOME]}}) as rig:
        pipe = rig.pipeline("drill")
        [stranger] = chain_people(rig.rt.config, VILLAGE_RESP)
        w = warning(Level.RED, drill=True)
        items = pipe._items(w, [Recipient(stranger, "shibao.gonghe", "village", (Channel.SMS,), True)], 1)
        assert items == []


async def test_the_drill_log_refuses_real_warnings_and_the_real_log_drills(tmp_path):
    with NotificationLog(tmp_path / "drill.sqlite", drill=True) as drill_log:
        with pytest.raises(StoreError, match="real warning"):
            drill_log.warnings.record(warning(Level.RED, drill=False), warning().updated_at)
    with pytest.raises(StoreError, match="holds drill warnings"):
        with NotificationLog(tmp_path / "drill.sqlite", drill=False):
            pass
    with NotificationLog(tmp_path / "real.sqlite") as real_log, pytest.raises(StoreError, match="drill warning"):
        real_log.warnings.record(warning(Level.RED, drill=True), warning().updated_at)


async def test_in_a_drill_run_even_an_unmarked_warning_is_treated_as_a_drill(mosquitto, prefix, tmp_path):
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, drill=True,
                              alerts={"grouping": {"wait_s": 0}, "drill": {"recipients": [DRILL_HOME]}}) as rig:
        tw = rig.twilio
        await rig.publish(warning(Level.BLUE, drill=False))
        await tw.wait_until(lambda: tw.messages, 10, "the drill SMS")
        await rig.settled()
        assert [(m.to, m.body[:4]) for m in tw.messages] == [("+8613911900002", "【演练】")]
        assert rig.pipeline("real").nflog.timeline.all() == []
