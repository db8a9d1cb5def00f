"""A red landslide warning at one village, down the six-level chain, with 叫应 and escalation.

Everything runs through the real twilio client against the stand-in, at an accelerated clock, so the
default 300 s acknowledgement timeout of a red warning passes in seconds.
"""

from __future__ import annotations

from datetime import datetime

from testing.alerts import warning

from testing.alerts import running_alerts
from simulators.twilio import Behaviour
from yujing.model import Level

SPEED = 150.0  # 300 scenario seconds = 2 real seconds
CITY_DUTY, COUNTY_DUTY, COUNTY_RESP, COUNTY_MAINT = "+8613911000001", "+8613911000002", "+8613911000003", "+8613911000004"
TOWN_DUTY, TOWN_RESP, TOWN_DEPUTY = "+8613911000010", "+8613911000011", "+8613911000012"
VIL_RESP, VIL_DEPUTY, VIL_GRID = "+8613911000020", "+8613911000021", "+8613911000022"
G1_LEADER, G2_LEADER = "+8613911000031", "+8613911000032"
MONITOR, SITE_RESP, SITE_MAINT = "+8613911000050", "+8613911000051", "+8613911000052"
XINLE = ["+8613911000040", "+8613911000041", "+8613911200012", "+8613911200013", "+8613911200014"]
GONGHE_HOMES = [f"+86139112{n:05d}" for n in range(1, 12)]
VOICE_HOMES = [p for i, p in enumerate(GONGHE_HOMES) if (i % 6 if i < 6 else (i - 6)) % 2 == 0]
PRESS = Behaviour.answers_and_presses("1", after_s=20)

# who, and how, for a red landslide at 共和村 (LS-GONGHE-01, group 1)
RED_SMS_AND_VOICE = [MONITOR, SITE_RESP, VIL_RESP, TOWN_RESP, TOWN_DUTY, G1_LEADER, G2_LEADER, COUNTY_DUTY]
RED_SMS_ONLY = [VIL_GRID, CITY_DUTY]
NOT_TOLD = [VIL_DEPUTY, TOWN_DEPUTY, COUNTY_RESP, COUNTY_MAINT, SITE_MAINT, *XINLE]


async def test_red_landslide_reaches_every_level_with_the_right_words_and_calls(mosquitto, prefix, tmp_path):
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, speed=SPEED,
                              alerts={"grouping": {"wait_s": 0}}, default=PRESS) as rig:
        await rig.publish(warning(Level.RED))
        tw = rig.twilio
        expected_sms = RED_SMS_AND_VOICE + RED_SMS_ONLY + GONGHE_HOMES
        expected_calls = RED_SMS_AND_VOICE + VOICE_HOMES
        await tw.wait_until(lambda: {m.to for m in tw.messages} >= set(expected_sms)
                            and {c.to for c in tw.calls} >= set(expected_calls), 15, "red fan-out")
        assert sorted(m.to for m in tw.messages) == sorted(expected_sms)  # each exactly once
        assert sorted(c.to for c in tw.calls) == sorted(expected_calls)
        told = {m.to for m in tw.messages} | {c.to for c in tw.calls}
        assert not told & set(NOT_TOLD)

        officer = tw.messages_to(VIL_RESP)[0].body
        assert officer.startswith("石宝镇共和村滑坡红色预警(I级)发布：共和村大岩口滑坡隐患点")
        assert "裂缝计1 24小时位移 12.5 mm" in officer and "请立即撤离至安全避险点" in officer
        assert officer.endswith("收到请回复1确认。")
        home = tw.messages_to(GONGHE_HOMES[0])[0].body
        assert "红色预警" in home and "确认" not in home  # households are told, not asked to confirm
        await tw.wait_until(lambda: tw.calls_to(VIL_RESP)[0].body, 10, "the call to be answered")
        call = tw.calls_to(VIL_RESP)[0]
        assert "<Gather" in call.twiml and 'language="cmn-CN"' in call.twiml
        assert "收到请按1确认" in call.body and "红色预警" in call.body


async def test_unanswered_red_call_escalates_on_schedule_to_the_deputy_then_the_township(mosquitto, prefix, tmp_path):
    behaviours = {VIL_RESP: Behaviour.never_answers(), VIL_DEPUTY: Behaviour.never_answers(),
                  TOWN_RESP: Behaviour(answer=True, digits=None), TOWN_DUTY: Behaviour(answer=True, digits=None)}
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, speed=SPEED, default=PRESS,
                              behaviours=behaviours, alerts={"grouping": {"wait_s": 0}}) as rig:
        tw = rig.twilio
        await rig.publish(warning(Level.RED))
        await tw.wait_until(lambda: len(tw.calls_to(TOWN_RESP)) >= 2, 20, "escalation up to the township")
        await tw.wait_until(lambda: any(e[3] == "escalate-up" and e[2] == VIL_RESP for e in rig.events()), 5, "log")
        steps = {e[3]: datetime.fromisoformat(e[0]) for e in rig.events() if e[2] == VIL_RESP}
        start = steps["awaiting-confirmation"]
        offsets = {k: (steps[k] - start).total_seconds() for k in ("escalate-recall", "escalate-deputy", "escalate-up")}
        assert 290 <= offsets["escalate-recall"] <= 340, offsets
        assert 590 <= offsets["escalate-deputy"] <= 640, offsets
        assert 890 <= offsets["escalate-up"] <= 940, offsets
        assert len(tw.calls_to(VIL_RESP)) == 2  # the call, then the call again
        assert len(tw.calls_to(VIL_DEPUTY)) == 1  # the deputy, who was not told before
        # the confirmed ones' chains stopped: the site monitor pressed 1 and was never called again
        assert len(tw.calls_to(MONITOR)) == 1
        assert any(e[3] == "confirmed" and e[2] == MONITOR for e in rig.events())


async def test_a_forged_acknowledgement_is_rejected_and_a_signed_one_stops_the_escalation(mosquitto, prefix, tmp_path):
    behaviours = {VIL_RESP: Behaviour(answer=True, digits=None)}
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, speed=SPEED, default=PRESS,
                              behaviours=behaviours, alerts={"grouping": {"wait_s": 0}}) as rig:
        tw = rig.twilio
        await rig.publish(warning(Level.RED))
        await tw.wait_until(lambda: any(c.status == "completed" for c in tw.calls_to(VIL_RESP)), 10, "first call")
        call = tw.calls_to(VIL_RESP)[0]
        action = call.twiml.split('action="')[1].split('"')[0].replace("&amp;", "&")
        params = {"CallSid": call.sid, "AccountSid": tw.account_sid, "From": call.from_, "To": VIL_RESP,
                  "CallStatus": "in-progress", "Digits": "1"}
        from twilio.request_validator import RequestValidator
        forged = RequestValidator("not-the-auth-token").compute_signature(action, params)
        assert await tw.post_signed(action, params, signature=forged) == 403
        assert await tw.post_signed(action, params, signature="") == 403
        await tw.wait_until(lambda: len(tw.calls_to(VIL_RESP)) >= 2, 10, "the forged press did not stop the recall")
        assert not any(e[3] == "confirmed" and e[2] == VIL_RESP for e in rig.events())

        assert await tw.post_signed(action, params) == 200  # signed with the account's token
        assert any(e[3] == "confirmed" and e[2] == VIL_RESP for e in rig.events())
        assert any(e[3] == "escalation-stopped" and e[2] == VIL_RESP for e in rig.events())
        calls_now = len(tw.calls_to(VIL_RESP)) + len(tw.calls_to(VIL_DEPUTY))
        assert [t for t in rig.pipeline().nflog.timers.pending() if t[1] == VIL_RESP] == []
        await rig.rt.sleep(700)  # two more steps' worth of scenario time: nobody else is called
        assert len(tw.calls_to(VIL_RESP)) + len(tw.calls_to(VIL_DEPUTY)) == calls_now
        assert tw.calls_to(VIL_DEPUTY) == []


async def test_an_sms_reply_confirms_and_a_failed_sms_falls_back_to_a_call(mosquitto, prefix, tmp_path):
    behaviours = {SITE_RESP: Behaviour.replies("收到", after_s=10), MONITOR: Behaviour(sms_delivered=False)}
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, speed=SPEED,
                              behaviours=behaviours, alerts={"grouping": {"wait_s": 0}}) as rig:
        tw = rig.twilio
        await rig.publish(warning(Level.YELLOW))  # yellow: SMS only, no confirmation asked
        await tw.wait_until(lambda: tw.calls_to(MONITOR), 10, "voice fallback for the undelivered SMS")
        assert tw.calls_to(SITE_RESP) == []
        assert any(e[3] == "sms-fallback-to-voice" and e[2] == MONITOR for e in rig.events())
        await rig.publish(warning(Level.ORANGE, version=2, state=__import__("yujing.model").model.WarningState.UPGRADED))
        await tw.wait_until(lambda: any(e[3] == "confirmed" and e[2] == SITE_RESP for e in rig.events()), 10,
                            "SMS reply confirms")
        assert any(e[1].endswith("#2") and e[3] == "confirmed" and e[2] == SITE_RESP for e in rig.events())
