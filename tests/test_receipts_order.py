"""Provider receipts are order-independent: the most advanced word is kept whatever came last, and a receipt
that arrives before its sid is stored is kept and applied when the sid lands (never dropped).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from testing.alerts import warning

from alerts.nflog import Channel, NodeTier, Notification, NotificationLog, Status

pytestmark = pytest.mark.timeout(90)
AT = datetime(2026, 7, 14, 3, 0, tzinfo=UTC)


def _sms(i: int = 0) -> Notification:
    w = warning()
    return Notification(key=Notification.make_key(w.id, f"+86139{i:08d}", Channel.SMS, 1), warning_id=w.id,
                        warning_key=w.key, phone=f"+86139{i:08d}", channel=Channel.SMS, attempt=1, priority=10,
                        body="滑坡蓝色预警", ack=False, node="shibao.gonghe.g1", tier=NodeTier.HOUSEHOLD, name="户")


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
