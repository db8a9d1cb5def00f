"""Provider receipts are order-independent: the most advanced word is kept whatever came last, and a receipt
that arrives before its sid is stored is kept and applied when the sid lands (never dropped).

The service tests run the real alerts service against the Twilio stand-in, whose answer to a create request
is held back (``latency_s``) while its far end already posts the message's status callbacks: what happens
when Twilio's callback beats its own HTTP answer.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import wait_for
from testing.alerts import ACCOUNT, MONITOR, SITE_RESP, TOKEN, captured, running_alerts, warning

from alerts.nflog import Channel, NodeTier, Notification, NotificationLog, Status
from simulators.twilio import Behaviour, TwilioStandIn
from yujing.model import Level

pytestmark = pytest.mark.timeout(90)
AT = datetime(2026, 7, 14, 3, 0, tzinfo=UTC)


def _sms(i: int = 0) -> Notification:
    w = warning()
    return Notification(key=Notification.make_key(w.id, f"+86139{i:08d}", Channel.SMS, 1), warning_id=w.id,
                        warning_key=w.key, phone=f"+86139{i:08d}", channel=Channel.SMS, attempt=1, priority=10,
                        body="滑坡蓝色预警", ack=False, node="shibao.gonghe.g1", tier=NodeTier.HOUSEHOLD,
                        name="户")


SMS_WORDS = [Status.QUEUED_AT_PROVIDER, Status.SENT, Status.DELIVERED, Status.READ]
CALL_WORDS = [Status.INITIATED, Status.RINGING, Status.IN_PROGRESS, Status.COMPLETED]


@pytest.mark.parametrize("words", [SMS_WORDS, CALL_WORDS], ids=["sms", "call"])
def test_whatever_the_order_of_receipts_the_most_advanced_is_kept(tmp_path: Path, words: list[Status]):
    with NotificationLog(tmp_path / "alerts.sqlite") as log:
        for i, order in enumerate(itertools.permutations(words)):
            n = _sms(i)
            log.notifications.enqueue([n], AT)
            log.notifications.sent(n.key, f"SM{i}", AT)
            for word in order:
                log.notifications.receipt(f"SM{i}", word, "", AT + timedelta(seconds=1))
            assert log.notifications.status(n.key) is words[-1], order


@pytest.mark.parametrize("early", [1, 2, 3])
def test_receipts_before_the_sid_are_kept_and_applied_when_it_lands_even_after_a_restart(tmp_path: Path, early: int):
    path = tmp_path / "alerts.sqlite"
    n = _sms()
    with NotificationLog(path) as log:
        log.notifications.enqueue([n], AT)
        assert log.notifications.claim(n.key, AT)
        for word in [Status.DELIVERED, Status.SENT, Status.QUEUED_AT_PROVIDER][:early]:  # newest first
            assert log.notifications.receipt("SM1", word, "", AT) is None  # not ours yet: kept
    with NotificationLog(path) as log:  # the sid lands after a restart (reconciled with the provider, say)
        log.notifications.sent(n.key, "SM1", AT + timedelta(seconds=2))
        assert log.notifications.status(n.key) is Status.DELIVERED
        assert [s for s, _, _ in log.notifications.applied_early["SM1"]] == \
            [Status.DELIVERED, Status.SENT, Status.QUEUED_AT_PROVIDER][:early]
        log.notifications.receipt("SM1", Status.SENT, "", AT + timedelta(seconds=3))  # late: moves nothing
        assert log.notifications.status(n.key) is Status.DELIVERED
        log.notifications.sent(_sms(1).key, "SM2", AT)  # another sid: nothing early for it
        assert "SM2" not in log.notifications.applied_early


def slow_twilio(behaviours: dict[str, Behaviour]) -> TwilioStandIn:
    """The stand-in, answering each create request 1.5 s late: the SMS's 'sent' (0.2 s) and final word (0.5 s)
    reach the webhook before the service has the sid."""
    return TwilioStandIn(auth_token=TOKEN, account_sid=ACCOUNT, behaviours=behaviours, latency_s=1.5)


async def test_an_sms_delivered_before_its_sid_was_stored_is_logged_delivered(mosquitto, prefix, tmp_path):
    async with slow_twilio({}) as tw, running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                                                     alerts={"grouping": {"wait_s": 0}}, twilio=tw) as rig:
        await rig.publish(warning(Level.BLUE))
        await tw.wait_until(lambda: tw.messages_to(MONITOR) and tw.messages_to(MONITOR)[0].status == "delivered",
                            10, "the SMS delivered at the stand-in")
        sms = tw.messages_to(MONITOR)[0]
        by_sid = rig.pipeline().nflog.notifications.by_sid
        await wait_for(lambda: by_sid(sms.sid) is not None, 10, "the sid stored")
        await wait_for(lambda: by_sid(sms.sid).status is Status.DELIVERED, 10, "the early 'delivered' applied")
        said = lambda: [e[3] for e in rig.events() if e[2] == MONITOR]  # noqa: E731
        await wait_for(lambda: "sms-delivered" in said(), 10, "the early words in the timeline")
        assert said().index("sms-sent") < said().index("sms-delivered")


async def test_an_sms_undelivered_before_its_sid_was_stored_is_followed_by_a_call(mosquitto, prefix, tmp_path):
    behaviours = {MONITOR: Behaviour(sms_delivered=False)}
    async with slow_twilio(behaviours) as tw, running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                                                             alerts={"grouping": {"wait_s": 0}}, twilio=tw) as rig:
        await rig.publish(warning(Level.BLUE))
        await tw.wait_until(lambda: tw.calls_to(MONITOR), 15, "the voice call that follows a failed SMS")
        sms = tw.messages_to(MONITOR)[0]
        n = rig.pipeline().nflog.notifications.by_sid(sms.sid)
        assert n is not None and n.status is Status.UNDELIVERED
        assert len(tw.calls_to(MONITOR)) == 1
        assert "sms-fallback-to-voice" in [e[3] for e in rig.events() if e[2] == MONITOR]


async def test_a_calls_late_ringing_after_completed_does_not_move_it_back(mosquitto, prefix, tmp_path):
    behaviours = {SITE_RESP: Behaviour.answers_and_presses("1", after_s=0.2)}
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, alerts={"grouping": {"wait_s": 0}},
                              behaviours=behaviours) as rig:
        tw = rig.twilio
        await rig.publish(warning(Level.ORANGE))
        await tw.wait_until(lambda: tw.calls_to(SITE_RESP) and tw.calls_to(SITE_RESP)[0].status == "completed", 15,
                            "the call to end")
        call = tw.calls_to(SITE_RESP)[0]
        by_sid = rig.pipeline().nflog.notifications.by_sid
        await wait_for(lambda: by_sid(call.sid).status is Status.COMPLETED, 10, "the call logged completed")
        url, form = captured(tw, "/twilio/status", CallSid=call.sid, CallStatus="completed")
        # a word the stand-in never sent for this call: a new event (not a replay), and a late one
        assert await tw.post_signed(url, {**form, "CallStatus": "initiated"}) == 204
        assert by_sid(call.sid).status is Status.COMPLETED
        assert "voice-initiated" in [e[3] for e in rig.events() if e[2] == SITE_RESP]  # said, and kept


def test_early_receipts_whose_sid_never_lands_are_dropped_after_a_day(tmp_path: Path):
    with NotificationLog(tmp_path / "alerts.sqlite") as log:
        assert log.notifications.receipt("SM-other", Status.DELIVERED, "", AT) is None  # another log's, say
        assert log.notifications.receipt("SM-late", Status.SENT, "", AT + timedelta(hours=23)) is None
        assert log.notifications.receipt("SM-new", Status.SENT, "", AT + timedelta(days=1, minutes=1)) is None
        n = _sms()
        log.notifications.enqueue([n], AT)
        log.notifications.sent(n.key, "SM-other", AT + timedelta(days=1, minutes=2))
        assert log.notifications.status(n.key) is Status.SENT  # its day-old 'delivered' was dropped
        assert "SM-other" not in log.notifications.applied_early
        m = _sms(1)
        log.notifications.enqueue([m], AT)
        log.notifications.sent(m.key, "SM-late", AT + timedelta(days=1, minutes=2))
        assert "SM-late" in log.notifications.applied_early  # younger than a day: kept
