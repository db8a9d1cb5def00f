"""Alibaba Cloud as the provider: the real SDKs against the stand-in, which checks signatures, templates, limits."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from testing.alerts import warning

from alerts.harness import running_alerts
from conftest import wait_for
from alerts.provider import PROVIDER_ERRORS
from simulators.aliyun import AliyunStandIn
from simulators.aliyun_setup import CONFIRMED_TTS, approved
from simulators.twilio_records import Behaviour
from yujing.clock import Clock
from yujing.model import Level

AK, SECRET, TOKEN = "LTAI5tYujingTest", "aliyun-test-secret-0123", "push-token-abcdef"
SIGN, SHOW = "中县应急管理局", "057100000001"
VILLAGE_RESP, VILLAGE_DEPUTY, TOWN_RESP = "+8613911000020", "+8613911000021", "+8613911000011"
SITE_RESP, COUNTY_DUTY = "+8613911000051", "+8613911000002"


def section(endpoint: str, templates: dict, **extra: Any) -> dict[str, Any]:
    return {"access_key_id": AK, "access_key_secret": {"env": "YUJING_TEST_ALIYUN_SECRET"}, "sign_name": SIGN,
            "show_number": SHOW, "sms_endpoint": endpoint, "voice_endpoint": endpoint, "protocol": "http",
            "templates": templates, "confirmed_tts": CONFIRMED_TTS, "push_token": {"env": "YUJING_TEST_ALIYUN_PUSH"},
            "backoff_s": 0.05, "retries": 2, **extra}


@contextlib.asynccontextmanager
async def aliyun_rig(tmp_path: Path, mosquitto: Any, prefix: str, monkeypatch: pytest.MonkeyPatch, *,
                     providers: tuple[str, ...] = ("aliyun",), speed: float = 1.0, secret: str = SECRET,
                     templates: dict | None = None, endpoint: str | None = None, alerts: dict | None = None,
                     behaviours: dict[str, Behaviour] | None = None,
                     twilio: str | None = None) -> AsyncIterator[tuple[Any, AliyunStandIn]]:
    monkeypatch.setenv("YUJING_TEST_ALIYUN_SECRET", secret)
    monkeypatch.setenv("YUJING_TEST_ALIYUN_PUSH", TOKEN)
    cfg_templates, sms, tts = approved()
    clock = Clock(speed)
    fast = Behaviour(ring_s=0.5, press_after_s=0.5, reply_after_s=0.5)
    async with AliyunStandIn(secrets={AK: SECRET}, signs={SIGN}, sms_templates=sms, tts_templates=tts,
                             show_numbers={SHOW}, clock=clock, default=fast, behaviours=behaviours,
                             verbose=False) as ali:
        settings = {"grouping": {"wait_s": 0}, "providers": list(providers),
                    "aliyun": section(endpoint or ali.endpoint, templates or cfg_templates), **(alerts or {})}
        async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, alerts=settings,
                                  clock=clock, default=fast, twilio=twilio) as rig:
            ali.push_to(**rig.state["aliyun_hooks"].urls(rig.state["webhooks"].base_url))
            yield rig, ali


async def test_red_warning_reaches_officials_by_ivr_and_sms_and_households_by_template(
        mosquitto, prefix, tmp_path, monkeypatch):
    async with aliyun_rig(tmp_path, mosquitto, prefix, monkeypatch) as (rig, ali):
        await rig.publish(warning(Level.RED))
        await ali.wait_until(lambda: ali.calls_to(VILLAGE_RESP) and ali.sms_to(VILLAGE_RESP)
                             and len({r.to for r in ali.records if r.kind == "sms"}) >= 20, 20, "the red fan-out")
        await rig.settled(20)
        call = ali.calls_to(VILLAGE_RESP)[0]
        assert call.action == "IvrCall" and "收到请按1确认" in call.text and "红色" in call.text
        sms = ali.sms_to(VILLAGE_RESP)[0]
        assert sms.text.startswith(f"【{SIGN}】") and "收到请回复1确认" in sms.text
        households = [n for n in rig.pipeline().nflog.notifications.for_warning_key(warning().key) if n.tier == "household"]
        assert households
        for n in households:
            got = ali.sms_to(n.phone) if n.channel == "sms" else ali.calls_to(n.phone)
            assert len(got) == 1, n.phone
            if n.channel == "voice":
                assert got[0].action == "SingleCallByTts"  # a notice: no key to press
        sent = Counter((r.to, r.kind) for r in ali.records)
        assert max(sent.values()) == 1  # nobody twice
        assert not ali.refused


async def test_keypress_1_and_an_sms_reply_confirm_through_push_receipts_and_stop_escalation(
        mosquitto, prefix, tmp_path, monkeypatch):
    behaviours = {VILLAGE_RESP: Behaviour(digits="1", press_after_s=0.5, ring_s=0.5),
                  TOWN_RESP: Behaviour(sms_reply="收到", reply_after_s=0.5, answer=False, ring_s=0.5)}
    async with aliyun_rig(tmp_path, mosquitto, prefix, monkeypatch, behaviours=behaviours) as (rig, ali):
        w = warning(Level.RED)
        await rig.publish(w)
        nflog = rig.pipeline().nflog

        async def confirmed() -> set[str]:
            return nflog.confirmations.of(w.id)
        await ali.wait_until(lambda: {VILLAGE_RESP, TOWN_RESP} <= nflog.confirmations.of(w.id), 20, "both confirmations")
        kinds = {k for k, body, status in ali.pushes if status == 200}
        assert {"VoiceReport", "SmsUp", "SmsReport"} <= kinds
        vias = dict((e[2], e[4]) for e in rig.events(what="confirmed"))
        assert '"voice"' in vias[VILLAGE_RESP] and '"sms"' in vias[TOWN_RESP]
        stopped = {e[2] for e in rig.events(what="escalation-stopped")}
        assert {VILLAGE_RESP, TOWN_RESP} <= stopped


async def test_unapproved_template_is_refused_with_the_providers_code_and_reported(
        mosquitto, prefix, tmp_path, monkeypatch):
    cfg_templates, _, _ = approved()
    cfg_templates["default.warning"] = {**cfg_templates["default.warning"], "sms": "SMS_404404"}
    async with aliyun_rig(tmp_path, mosquitto, prefix, monkeypatch, templates=cfg_templates) as (rig, ali):
        await rig.publish(warning(Level.YELLOW))
        await wait_for(lambda: len(rig.events(what="sms-failed")) >= 5, 20, "every SMS refused")
        await rig.settled(20)
        assert {code for _, _, code in ali.refused} == {"isv.SMS_TEMPLATE_ILLEGAL"}
        failed = [e for e in rig.events(what="sms-failed")]
        assert failed and all("isv.SMS_TEMPLATE_ILLEGAL" in e[4] for e in failed)
        # refused SMS are followed by a call with the same words (approved as TTS)
        assert ali.calls_to(SITE_RESP)


async def test_a_wrong_access_key_secret_is_refused_as_a_bad_signature_and_reported(
        mosquitto, prefix, tmp_path, monkeypatch):
    before = PROVIDER_ERRORS.labels(reason="refused-SignatureDoesNotMatch")._value.get()
    async with aliyun_rig(tmp_path, mosquitto, prefix, monkeypatch, secret="not-the-secret") as (rig, ali):
        await rig.publish(warning(Level.YELLOW))
        await wait_for(lambda: len(rig.events(what="sms-failed")) >= 5, 20, "every SMS refused")
        await rig.settled(20)
        assert not ali.records
        assert {code for _, _, code in ali.refused} == {"SignatureDoesNotMatch"}
        assert all("SignatureDoesNotMatch" in e[4] for e in rig.events(what="sms-failed"))
        assert PROVIDER_ERRORS.labels(reason="refused-SignatureDoesNotMatch")._value.get() > before


async def test_a_push_without_the_token_is_refused_and_confirms_nothing(mosquitto, prefix, tmp_path, monkeypatch):
    import aiohttp
    async with aliyun_rig(tmp_path, mosquitto, prefix, monkeypatch) as (rig, ali):
        w = warning(Level.RED)
        await rig.publish(w)
        await ali.wait_until(lambda: ali.sms_to(VILLAGE_RESP), 20, "the SMS")
        base = rig.state["webhooks"].base_url
        async with aiohttp.ClientSession() as s:
            body = [{"phone_number": VILLAGE_RESP[3:], "content": "1", "send_time": "2026-07-14 00:00:00",
                     "dest_code": "1", "sequence_id": "1"}]
            async with s.post(f"{base}/aliyun/wrong-token/sms-up", json=body) as r:
                assert r.status == 403
        assert VILLAGE_RESP not in rig.pipeline().nflog.confirmations.of(w.id)


async def test_failover_to_twilio_when_aliyun_is_down_tells_everyone_once(mosquitto, prefix, tmp_path, monkeypatch):
    async with aliyun_rig(tmp_path, mosquitto, prefix, monkeypatch, providers=("aliyun", "twilio"),
                          endpoint="127.0.0.1:9") as (rig, ali):  # nothing listens: the provider is down
        await rig.publish(warning(Level.YELLOW))
        tw = rig.twilio
        expected = {"+8613911000050", SITE_RESP, VILLAGE_RESP, TOWN_RESP, "+8613911000010"}
        await tw.wait_until(lambda: {m.to for m in tw.messages} >= expected, 20, "the SMS through Twilio")
        await rig.settled(20)
        assert Counter(m.to for m in tw.messages) == Counter(expected)
        assert not ali.records


async def test_failover_to_aliyun_when_twilio_is_down_tells_everyone_once(mosquitto, prefix, tmp_path, monkeypatch):
    async with aliyun_rig(tmp_path, mosquitto, prefix, monkeypatch, providers=("twilio", "aliyun"),
                          twilio="http://127.0.0.1:9") as (rig, ali):  # nothing listens there
        await rig.publish(warning(Level.YELLOW))
        expected = {"13911000050", SITE_RESP[3:], VILLAGE_RESP[3:], TOWN_RESP[3:], "13911000010"}
        await ali.wait_until(lambda: {r.to for r in ali.records} >= expected, 30, "the SMS through Alibaba Cloud")
        await rig.settled(30)
        assert Counter(r.to for r in ali.records) == Counter(expected)


async def test_failover_when_aliyun_refuses_sends_each_notification_once_overall(
        mosquitto, prefix, tmp_path, monkeypatch):
    cfg_templates, _, _ = approved()
    cfg_templates["default.warning"] = {**cfg_templates["default.warning"], "voice": "TTS_404404"}
    async with aliyun_rig(tmp_path, mosquitto, prefix, monkeypatch, providers=("aliyun", "twilio"),
                          templates=cfg_templates) as (rig, ali):
        await rig.publish(warning(Level.RED))
        tw = rig.twilio
        await tw.wait_until(lambda: tw.calls_to(VILLAGE_RESP), 20, "the call through Twilio")
        await rig.settled(20)
        assert not [r for r in ali.records if r.kind == "call"]  # every call refused there…
        assert ali.sms_to(VILLAGE_RESP) and not tw.messages_to(VILLAGE_RESP)  # …SMS went by Alibaba Cloud
        calls = Counter(c.to for c in tw.calls)
        assert calls and max(calls.values()) == 1
        sms = Counter(r.to for r in ali.records if r.kind == "sms")
        assert max(sms.values()) == 1


async def test_a_recall_the_per_callee_limit_would_refuse_goes_to_the_deputy(mosquitto, prefix, tmp_path, monkeypatch):
    behaviours = {VILLAGE_RESP: Behaviour.never_answers()}
    alerts = {"ack": {"timeout_s": {"red": 20}, "steps": ["recall", "deputy", "up"]}}
    async with aliyun_rig(tmp_path, mosquitto, prefix, monkeypatch, speed=10, behaviours=behaviours,
                          alerts=alerts) as (rig, ali):
        w = warning(Level.RED)
        await rig.publish(w)
        await ali.wait_until(lambda: ali.calls_to(VILLAGE_DEPUTY), 20, "the deputy's call")
        limited = rig.events(what="recall-limited")
        assert any(e[2] == VILLAGE_RESP and VILLAGE_DEPUTY in e[4] for e in limited)
        assert len(ali.calls_to(VILLAGE_RESP)) == 1  # not recalled 20 s after the first call
        assert not [r for r in ali.refused if r[2] == "isv.BUSINESS_LIMIT_CONTROL"]


def test_check_refuses_a_policy_whose_texts_no_approved_template_can_carry():
    from pydantic import ValidationError

    from alerts.config import AlertsConfig

    cfg_templates, _, _ = approved()
    ok = {"providers": ["aliyun"], "aliyun": section("127.0.0.1:1", cfg_templates)}
    AlertsConfig.model_validate(ok)
    del cfg_templates["default.lift"]
    voice_less = {**cfg_templates, "default.warning": {"sms": "SMS_1"}}
    with pytest.raises(ValidationError) as exc:
        AlertsConfig.model_validate({**ok, "aliyun": section("127.0.0.1:1", voice_less)})
    text = str(exc.value)
    assert "default.lift by sms" in text and "default.warning by voice" in text
    with pytest.raises(ValidationError, match="too long|over the cap"):
        AlertsConfig.model_validate({**ok, "aliyun": section("127.0.0.1:1", approved()[0], param_max=8)})


async def test_a_second_warnings_call_the_per_callee_limit_would_refuse_is_held_not_lost_nor_refused(
        mosquitto, prefix, tmp_path, monkeypatch):
    from yujing.model import Hazard

    async with aliyun_rig(tmp_path, mosquitto, prefix, monkeypatch, speed=30) as (rig, ali):
        await rig.publish(warning(Level.RED), warning(Level.RED, hazard=Hazard.TORRENT))
        await ali.wait_until(lambda: {"滑坡", "山洪"} <= {h for c in ali.calls_to(VILLAGE_RESP) for h in ("滑坡", "山洪")
                                                        if h in c.text}, 30, "both warnings' calls")
        calls = ali.calls_to(VILLAGE_RESP)
        assert all(b.at - a.at >= 60 - 1 for a, b in zip(calls, calls[1:]))  # once a minute, as allowed
        assert not [r for r in ali.refused if r[2] == "isv.BUSINESS_LIMIT_CONTROL"]
        assert any(e[2] == VILLAGE_RESP for e in rig.events(what="voice-held"))


async def test_the_same_text_to_many_goes_in_one_sendsms_and_each_receipt_finds_its_notification(
        mosquitto, prefix, tmp_path, monkeypatch):
    async with aliyun_rig(tmp_path, mosquitto, prefix, monkeypatch,
                          alerts={"rates": {"sms": {"per_s": 2, "burst": 1, "concurrency": 1}}}) as (rig, ali):
        w = warning(Level.RED)
        await rig.publish(w)
        await wait_for(lambda: rig.events(what="fanout-plan"), 20, "the fan-out")
        households = {n.phone for n in rig.pipeline().nflog.notifications.for_warning_key(w.key) if n.tier == "household"}
        assert len(households) >= 10
        await ali.wait_until(lambda: {h[3:] for h in households} <= {r.to for r in ali.records if r.kind == "sms"},
                             30, "every household's SMS")
        by_request = Counter(r.id for r in ali.records if r.kind == "sms" and "+86" + r.to in households)
        assert max(by_request.values()) > 1  # households share requests (SendSms takes up to 1,000 numbers)
        assert Counter(r.to for r in ali.records if r.kind == "sms").most_common(1)[0][1] == 1  # nobody twice
        await wait_for(lambda: all(n.status == "delivered" for n in rig.pipeline().nflog.notifications.for_warning_key(w.key)
                                   if n.channel == "sms"), 20, "every SMS delivered, by its own receipt")


def test_a_drill_of_a_deployment_on_alibaba_cloud_sends_through_the_stand_in_only(tmp_path, monkeypatch):
    from alerts.harness import write_config
    from simulators.drill import drill_config
    from simulators.scenario import Scenario
    from yujing.compose import load_config

    monkeypatch.setenv("YUJING_TEST_ALIYUN_SECRET", SECRET)
    cfg_templates, _, _ = approved()
    write_config(tmp_path, mqtt_port=1883, prefix="p", twilio_url="http://127.0.0.1:1",
                 alerts={"providers": ["aliyun"], "aliyun": section("dysmsapi.aliyuncs.com", cfg_templates)})
    cfg = load_config(tmp_path)
    assert [p.value for p in cfg.alerts.providers] == ["aliyun"]
    drilled = drill_config(cfg, Scenario.model_validate({"name": "t", "duration": 60}), state_dir=tmp_path / "d",
                           twilio_url="http://127.0.0.1:2", speed=10)
    assert [p.value for p in drilled.alerts.providers] == ["twilio"]
    assert drilled.alerts.twilio.base_url == "http://127.0.0.1:2"


async def test_lost_answers_are_never_sent_again_the_sms_found_by_outid_the_call_proved_by_its_receipt(
        mosquitto, prefix, tmp_path, monkeypatch):
    behaviours = {VILLAGE_RESP: Behaviour(digits="1", press_after_s=0.5, ring_s=0.5)}
    alerts = {"twilio": {"outage_retry_s": 0.5}, "rates": {"voice": {"per_s": 20, "burst": 1, "concurrency": 1},
                                                           "sms": {"per_s": 20, "burst": 1, "concurrency": 1}}}
    async with aliyun_rig(tmp_path, mosquitto, prefix, monkeypatch, behaviours=behaviours, alerts=alerts) as (rig, ali):
        ali.lose_answers("SendSms", 2)
        ali.lose_answers("IvrCall", 1)
        w = warning(Level.RED)
        await rig.publish(w)
        await ali.wait_until(lambda: VILLAGE_RESP in rig.pipeline().nflog.confirmations.of(w.id), 30, "the confirmation")
        await rig.settled(30)
        assert not ali.lost["SendSms"] and not ali.lost["IvrCall"]  # the answers were indeed lost
        sms = Counter(r.to for r in ali.records if r.kind == "sms")
        calls = Counter(r.to for r in ali.records if r.kind == "call")
        assert max(sms.values()) == 1 and max(calls.values()) == 1  # nobody twice
        assert rig.events(what="reconciled")
        assert not rig.events(what="voice-failed")
