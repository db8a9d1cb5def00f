"""The console and the duty API count a warning's delivery the same way, from the notification log alerts
writes: a person reached is delivered (an SMS delivered, a call completed, a message read), and a person whose
SMS failed but whose fallback call got through is reached, not failed."""

from __future__ import annotations

from datetime import datetime, timezone

from testing.alerts import warning

from alerts.nflog import NotificationLog
from alerts.nflog.notifications import Notification
from alerts.nflog.states import NodeTier, Status
from console.chain import ChainLog
from duty.progress import Progress
from yujing.config.people import Channel
from yujing.model import Level

AT = datetime(2026, 7, 1, 8, tzinfo=timezone.utc)


def note(w, phone: str, channel: Channel, reason: str = "", tier: NodeTier = NodeTier.VILLAGE) -> Notification:
    return Notification(key=Notification.make_key(w.id, phone, channel, 0), warning_id=w.id, warning_key=w.key,
                        phone=phone, channel=channel, attempt=0, priority=3, body="橙色预警", ack=True,
                        node="石堤社区", tier=tier, name=phone[-4:], reason=reason)


def both(path, w) -> tuple[dict, dict]:
    chain = ChainLog(path)
    try:
        return chain.progress(w.id), Progress(path).summary(w.key)
    finally:
        chain.close()


def test_a_failed_sms_whose_call_got_through_counts_as_reached_and_read_counts_as_delivered(tmp_path):
    path = tmp_path / "alerts.sqlite"
    w = warning(Level.ORANGE)
    fell_back, read, failed = "+8613900000001", "+8613900000002", "+8613900000003"
    told = [(fell_back, Channel.SMS, "undelivered"), (fell_back, Channel.VOICE, "completed"),
            (read, Channel.SMS, "read"), (failed, Channel.SMS, "failed")]
    with NotificationLog(path) as log:
        log.warnings.record(w, AT)
        log.notifications.enqueue([note(w, phone, channel) for phone, channel, _ in told], AT)
        for i, (phone, channel, word) in enumerate(told):
            key = Notification.make_key(w.id, phone, channel, 0)
            assert log.notifications.claim(key, AT)
            log.notifications.sent(key, f"SM{i}", AT)
            log.notifications.receipt(f"SM{i}", Status.from_provider(word), "", AT)
    for seen in both(path, w):
        assert (seen["told"], seen["delivered"], seen["failed"]) == (3, 2, 1), seen


def test_escalated_counts_whose_silence_was_escalated_and_by_escalation_who_was_told_because_of_it(tmp_path):
    """They meant different things under one name: the console counted the people an escalation told (and a
    duty officer's resend), the duty API the people whose silence was escalated."""
    path = tmp_path / "alerts.sqlite"
    w = warning(Level.ORANGE)
    silent, answered, deputy, township = "+8613900000001", "+8613900000002", "+8613900000003", "+8613900000004"
    with NotificationLog(path) as log:
        log.warnings.record(w, AT)
        log.notifications.enqueue([note(w, silent, Channel.SMS), note(w, answered, Channel.SMS),
                                   note(w, silent, Channel.VOICE, reason="resend"),
                                   note(w, deputy, Channel.VOICE, reason=f"deputy:{silent}"),
                                   note(w, township, Channel.VOICE, reason=f"up:{silent}", tier=NodeTier.TOWNSHIP)],
                                  AT)
        log.confirmations.add(w.id, answered, "sms-reply", AT)
    console, duty = both(path, w)
    for seen in (console, duty):
        assert (seen["told"], seen["confirmed"], seen["escalated"], seen["by_escalation"]) == (4, 1, 1, 2), seen
        by_tier = {t["tier"]: (t["told"], t["escalated"], t["by_escalation"]) for t in seen["tiers"]}
        assert by_tier == {"township": (1, 0, 1), "village": (3, 1, 1)}, by_tier
        assert [t["tier"] for t in seen["tiers"]] == ["township", "village"]  # down the chain
        assert sorted(u["phone"] for u in seen["unconfirmed"]) == [silent, deputy, township]
    assert {u["phone"]: u["role"] for u in console["unconfirmed"]} == {silent: "", deputy: "", township: ""}
