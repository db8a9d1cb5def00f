"""叫应 cannot be silenced by a replayed request: each provider event is acted on once, durably, and a reply
confirms only what its sender had been asked when it arrived; a number never asked confirms nothing.

Every request here is really signed (the stand-in signs with twilio's RequestValidator and the account's token,
exactly as it signed the original) and sent to the real webhook server of the running service.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from conftest import wait_for
from prometheus_client import REGISTRY
from testing.alerts import MONITOR, SITE_RESP, captured, warning

from testing.alerts import running_alerts
from alerts.nflog import Notification, NotificationLog, Status, ref
from simulators.ports import free_port
from simulators.twilio import Behaviour
from yujing.model import Level, WarningState

STRANGER = "+8613999999999"


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("yujing_alerts_webhook_rejected_total", {"reason": reason}) or 0.0


def confirmed(rig, w, phone: str) -> bool:
    return phone in rig.pipeline().nflog.confirmations.of(w.id)


def asked(rig, w, phone: str) -> bool:
    return any(e[3] == "awaiting-confirmation" and e[1] == w.id and e[2] == phone for e in rig.events())


async def test_a_captured_reply_replayed_after_a_newer_warning_does_not_confirm_it(mosquitto, prefix, tmp_path):
    v1 = warning(Level.ORANGE)
    v2 = warning(Level.RED, version=2, state=WarningState.UPGRADED)
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, alerts={"grouping": {"wait_s": 0}},
                              behaviours={SITE_RESP: Behaviour.replies("1", after_s=0.2)}) as rig:
        tw = rig.twilio
        await rig.publish(v1)
        await wait_for(lambda: confirmed(rig, v1, SITE_RESP), 10, "the genuine reply to confirm v1")
        url, form = captured(tw, "/twilio/sms", From=SITE_RESP)
        tw.set_behaviour(SITE_RESP, Behaviour())  # the person does not answer the newer one
        await rig.publish(v2)
        await wait_for(lambda: asked(rig, v2, SITE_RESP) and any(
            n.status != "queued" for n in rig.pipeline().nflog.notifications.for_warning(v2.id)
            if n.phone == SITE_RESP), 10,
            "the red warning asking them again, sent")
        before = refused("replay")
        assert await tw.post_signed(url, form) == 200  # answered as if fine: Twilio must not retry it
        assert not confirmed(rig, v2, SITE_RESP)
        assert refused("replay") - before == 1
        pending = [t for t in rig.pipeline().nflog.timers.pending() if t[:2] == (v2.id, SITE_RESP)]
        assert len(pending) == 1  # their escalation goes on
        # a reply that is new (its own MessageSid) still confirms: the refusal is of the replay, not of the person
        assert await tw.send_inbound_sms(SITE_RESP, "1", to="+8610123456789") == 200
        await wait_for(lambda: confirmed(rig, v2, SITE_RESP), 10, "a genuine reply to confirm v2")


async def test_a_reply_replayed_after_a_restart_is_still_refused(mosquitto, prefix, tmp_path):
    """The ids acted on are in the notification log's file: a restart does not reopen the door."""
    port = free_port()
    alerts = {"grouping": {"wait_s": 0}, "webhook": {"port": port}}  # the same URL: the same signature
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, alerts=alerts,
                              behaviours={SITE_RESP: Behaviour.replies("收到", after_s=0.2)}) as rig:
        await rig.publish(warning(Level.ORANGE))
        await wait_for(lambda: confirmed(rig, warning(Level.ORANGE), SITE_RESP), 10, "the genuine reply")
        url, form = captured(rig.twilio, "/twilio/sms", From=SITE_RESP)
    v2 = warning(Level.RED, version=2, state=WarningState.UPGRADED)
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, alerts=alerts) as rig:
        await rig.publish(v2)
        await wait_for(lambda: asked(rig, v2, SITE_RESP) and any(
            n.status != "queued" for n in rig.pipeline().nflog.notifications.for_warning(v2.id)
            if n.phone == SITE_RESP), 10,
            "the red warning asking them again, sent")
        before = refused("replay")
        assert await rig.twilio.post_signed(url, form) == 200
        assert not confirmed(rig, v2, SITE_RESP)
        assert refused("replay") - before == 1


async def test_a_replayed_keypress_and_status_callback_are_refused(mosquitto, prefix, tmp_path):
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, alerts={"grouping": {"wait_s": 0}},
                              behaviours={SITE_RESP: Behaviour.answers_and_presses("1", after_s=0.2)}) as rig:
        tw = rig.twilio
        w = warning(Level.ORANGE)
        await rig.publish(w)
        await wait_for(lambda: confirmed(rig, w, SITE_RESP), 10, "the keypress to confirm")
        await tw.wait_until(lambda: tw.calls_to(SITE_RESP) and tw.calls_to(SITE_RESP)[0].status == "completed", 10,
                            "the call to end")
        call = tw.calls_to(SITE_RESP)[0]
        url, form = captured(tw, "/twilio/gather", CallSid=call.sid, Digits="1")
        before = refused("replay")
        status = await tw.post_signed(url, form)
        assert status == 200 and refused("replay") - before == 1
        assert sum(1 for e in rig.events() if e[3] == "confirmed" and e[2] == SITE_RESP) == 1
        # a status callback replayed: the SMS's earlier 'sent' must not overwrite 'delivered'
        sms = tw.messages_to(SITE_RESP)[0]
        await tw.wait_until(lambda: sms.status == "delivered", 10, "the SMS delivered")
        by_sid = rig.pipeline().nflog.notifications.by_sid
        await wait_for(lambda: by_sid(sms.sid).status is Status.DELIVERED, 10, "logged")
        url, form = captured(tw, "/twilio/status", MessageSid=sms.sid, MessageStatus="sent")
        assert await tw.post_signed(url, form) == 204
        assert refused("replay") - before == 2
        assert by_sid(sms.sid).status is Status.DELIVERED


async def test_a_providers_own_queued_status_never_makes_a_sent_sms_pending_again(mosquitto, prefix, tmp_path):
    """Twilio's 'queued' (or 'sending') is the provider's, not ours: read as ours, the row would be pending again,
    and a restart would send the SMS a second time. Late, it moves nothing (tests/test_receipts_order.py)."""
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        tw = rig.twilio
        await rig.publish(warning(Level.BLUE))
        await tw.wait_until(lambda: tw.messages_to(MONITOR) and tw.messages_to(MONITOR)[0].status == "delivered", 10,
                            "the blue SMS delivered")
        sms = tw.messages_to(MONITOR)[0]
        by_sid = rig.pipeline().nflog.notifications.by_sid
        await wait_for(lambda: by_sid(sms.sid).status is Status.DELIVERED, 10, "the delivery logged")
        for said in ("queued", "sending"):  # late or out of order: each a new event, not a replay
            url, form = captured(tw, "/twilio/status", MessageSid=sms.sid, MessageStatus="sent")
            assert await tw.post_signed(url, {**form, "MessageStatus": said}) == 204
            assert by_sid(sms.sid).status is Status.DELIVERED  # the most advanced word is kept
            assert rig.pipeline().nflog.notifications.pending() == []
        assert [e[3] for e in rig.events() if e[2] == MONITOR][-2:] == ["sms-queued", "sms-sending"]


async def test_a_confirmation_from_a_number_never_asked_is_refused_and_counted(mosquitto, prefix, tmp_path):
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        tw = rig.twilio
        blue = warning(Level.BLUE)  # SMS to the monitor, no confirmation asked
        await rig.publish(blue)
        await tw.wait_until(lambda: tw.messages_to(MONITOR), 10, "the blue SMS")
        before = refused("not-asked")
        for phone in (STRANGER, MONITOR):  # never told anything; told, but never asked
            assert await tw.send_inbound_sms(phone, "1", to="+8610123456789") == 200
        assert refused("not-asked") - before == 2
        # a keypress signed for a notification that asked nothing (the monitor's blue SMS)
        told = next(n for n in rig.pipeline().nflog.notifications.for_warning(blue.id) if n.phone == MONITOR)
        url = f"{rig.live.webhook_url}/twilio/gather?n={ref(told.key)}&k=real"
        assert await tw.post_signed(url, {"CallSid": "CA" + "0" * 32, "Digits": "1", "From": "+8610123456789",
                                          "To": MONITOR, "AccountSid": tw.account_sid}) == 200
        assert refused("not-asked") - before == 3
        assert rig.pipeline().nflog.confirmations.count() == 0
        before = refused("no-event-id")
        url, form = captured(tw, "/twilio/sms", From=MONITOR)
        del form["MessageSid"]
        assert await tw.post_signed(url, form) == 400  # signed, but no id to remember it by
        assert refused("no-event-id") - before == 1


T1 = datetime(2026, 7, 14, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(("received", "counts"), [
    (T1 - timedelta(seconds=1), False),  # the reply reached the provider before we asked: not about this
    (T1 - timedelta(microseconds=1), False),
    (T1, True),
    (T1 + timedelta(microseconds=1), True),
    (T1 + timedelta(hours=1), True),
])
def test_a_reply_confirms_only_what_was_asked_before_the_provider_received_it(tmp_path, received, counts):
    with NotificationLog(tmp_path / "log.sqlite") as log:
        n = Notification(key=Notification.make_key("landslide:X#1", SITE_RESP, "sms", 1), warning_id="landslide:X#1",
                         warning_key="landslide:X", phone=SITE_RESP, channel="sms", attempt=1, priority=35, body="b",
                         ack=True, node="site:X", tier="site", name="n")
        queued = dataclasses.replace(n, key=Notification.make_key("landslide:X#2", SITE_RESP, "sms", 1),
                                     warning_id="landslide:X#2")
        log.notifications.enqueue([n, queued], T1)
        assert log.notifications.claim(n.key, T1)  # the request for #1 made at T1; #2 still queued (not asked yet)
        assert [m.warning_id for m in log.notifications.awaiting_confirmation(SITE_RESP, asked_by=received)] == \
            (["landslide:X#1"] if counts else [])
        assert log.notifications.was_asked(SITE_RESP, received) is counts
