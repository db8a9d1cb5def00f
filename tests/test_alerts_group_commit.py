"""Group commit of the notification log (alerts/nflog/group.py) and the fan-out that uses it: many writers share a
commit, each is durable before it resumes, one writer's error is its own; every request is made only once its
claim is on disk, and a fan-out commits far fewer times than it writes."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.config import RateConfig
from alerts.fanout import Dispatcher, run_until
from alerts.nflog import Channel, NodeTier, Notification, NotificationLog, Status
from yujing.clock import Clock

NOW = datetime(2026, 7, 14, 3, 0, tzinfo=UTC)


def note(i: int) -> Notification:
    phone = f"+86137{i:08d}"
    return Notification(key=Notification.make_key("w#1", phone, Channel.SMS, 1), warning_id="w#1", warning_key="w",
                        phone=phone, channel=Channel.SMS, attempt=1, priority=4, body="红色预警", ack=False,
                        node="shibao.gonghe.g1", tier=NodeTier.HOUSEHOLD, name=f"住户{i}")


def status_on_disk(path: Path, key: str) -> str | None:
    """Read by another connection: only what was committed."""
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT status FROM notifications WHERE key=?", (key,)).fetchone()
        return row[0] if row else None
    finally:
        db.close()


async def test_writes_of_one_turn_share_one_commit_and_each_is_on_disk_when_its_writer_resumes(tmp_path: Path):
    path = tmp_path / "alerts.sqlite"
    with NotificationLog(path) as log:
        ns = log.notifications.enqueue([note(i) for i in range(50)], NOW)
        before = log.group.commits

        async def claim(n: Notification) -> bool:
            ok = await log.group.run(lambda: log.notifications.claim(n.key, NOW))
            assert status_on_disk(path, n.key) == "sending"  # durable by the time the writer goes on
            return ok

        assert await asyncio.gather(*(claim(n) for n in ns)) == [True] * 50
        assert log.group.commits - before == 1
        # a second claim of the same notification is refused, however grouped
        assert await asyncio.gather(*(log.group.run(lambda: log.notifications.claim(ns[0].key, NOW))
                                      for _ in range(3))) == [False] * 3


async def test_a_write_that_raises_fails_alone_and_the_others_of_its_turn_commit(tmp_path: Path):
    path = tmp_path / "alerts.sqlite"
    with NotificationLog(path) as log:
        a, b = log.notifications.enqueue([note(1), note(2)], NOW)

        def broken() -> None:
            log.notifications.claim(b.key, NOW)  # rolled back with the error that follows
            raise ValueError("a bug in one writer")

        results = await asyncio.gather(log.group.run(lambda: log.notifications.claim(a.key, NOW)),
                                       log.group.run(broken), return_exceptions=True)
        assert results[0] is True and isinstance(results[1], ValueError)
        assert status_on_disk(path, a.key) == "sending"
        assert status_on_disk(path, b.key) == "queued"


async def test_the_batched_items_of_a_turn_are_written_in_one_call_and_each_writer_gets_its_own_result(
        tmp_path: Path):
    with NotificationLog(tmp_path / "alerts.sqlite") as log:
        calls: list[list[int]] = []

        def squares(items: list[int]) -> list[int]:
            calls.append(list(items))
            return [i * i for i in items]

        before = log.group.commits
        assert await asyncio.gather(*(log.group.many(squares, i) for i in range(20))) == [i * i for i in range(20)]
        assert calls == [list(range(20))] and log.group.commits - before == 1


async def test_a_batched_item_that_raises_fails_alone_and_the_rest_of_its_batch_commits(tmp_path: Path):
    path = tmp_path / "alerts.sqlite"
    with NotificationLog(path) as log:
        ns = log.notifications.enqueue([note(i) for i in range(3)], NOW)

        def claim_unless_second(items: list[tuple[str, datetime]]) -> list[bool]:
            if ns[1].key in {k for k, _ in items}:
                log.notifications.claim_many(items)  # written, then rolled back with the error
                raise ValueError("a bug with this one item")
            return log.notifications.claim_many(items)

        results = await asyncio.gather(*(log.group.many(claim_unless_second, (n.key, NOW)) for n in ns),
                                       return_exceptions=True)
        assert results[0] is True and isinstance(results[1], ValueError) and results[2] is True
        assert [status_on_disk(path, n.key) for n in ns] == ["sending", "queued", "sending"]


async def test_claims_of_one_turn_are_one_statement_and_a_key_claimed_twice_is_claimed_once(tmp_path: Path):
    path = tmp_path / "alerts.sqlite"
    with NotificationLog(path) as log:
        a, b = log.notifications.enqueue([note(1), note(2)], NOW)
        log.notifications.claim(b.key, NOW)  # already sending: not claimed again
        got = await asyncio.gather(*(log.group.many(log.notifications.claim_many, (k, NOW))
                                     for k in (a.key, a.key, b.key)))
        assert got == [True, False, False]
        assert status_on_disk(path, a.key) == "sending"


async def test_a_provider_event_id_given_twice_in_one_turn_is_acted_on_once_and_remembered(tmp_path: Path):
    with NotificationLog(tmp_path / "alerts.sqlite") as log:
        ev = log.provider_events
        assert not ev.seen("twilio", "status:SM1:sent", NOW)
        got = await asyncio.gather(*(log.group.many(ev.seen_many, ("twilio", e, NOW))
                                     for e in ("status:SM1:sent", "status:SM2:sent", "status:SM2:sent")))
        assert got == [True, False, True]  # seen before; fresh; the same id again in the turn: a replay
        assert ev.seen("twilio", "status:SM2:sent", NOW)


async def test_the_events_of_a_turn_are_written_with_its_commit_and_not_at_all_if_it_rolls_back(tmp_path: Path):
    path = tmp_path / "alerts.sqlite"
    with NotificationLog(path) as log:
        def add_then_read() -> int:
            log.timeline.add(NOW, "w#1", "+8613700000001", "sms-sent", {"sid": "SM1"})
            return len(log.timeline.all("w#1"))  # a read inside the transaction sees its own events

        assert await log.group.run(add_then_read) == 1
        with pytest.raises(ValueError):
            with log.transaction():
                log.timeline.add(NOW, "w#1", "+8613700000001", "sms-delivered", "")
                raise ValueError("rolled back")
        db = sqlite3.connect(path)
        try:
            assert db.execute("SELECT what FROM events").fetchall() == [("sms-sent",)]
        finally:
            db.close()


async def test_a_receipt_that_repeats_the_status_leaves_the_row_and_a_new_status_is_recorded(tmp_path: Path):
    path = tmp_path / "alerts.sqlite"
    with NotificationLog(path) as log:
        (n,) = log.notifications.enqueue([note(1)], NOW)
        log.notifications.claim(n.key, NOW)
        log.notifications.sent(n.key, "SM1", NOW)
        later = datetime(2026, 7, 14, 3, 5, tzinfo=UTC)
        got = log.notifications.receipt("SM1", Status.SENT, "", later)
        assert got is not None and got.key == n.key and got.status is Status.SENT
        got = log.notifications.receipt("SM1", Status.UNDELIVERED, "30003", later)
        assert got is not None and got.status is Status.UNDELIVERED
        assert log.notifications.receipt("SM-not-ours", Status.DELIVERED, "", later) is None
        db = sqlite3.connect(path)
        try:
            assert db.execute("SELECT status, error, updated_at FROM notifications").fetchone() == (
                "undelivered", "30003", later.isoformat())
        finally:
            db.close()


async def test_a_callbacks_id_and_its_receipt_are_one_write_and_the_same_callback_twice_is_acted_on_once(
        tmp_path: Path):
    with NotificationLog(tmp_path / "alerts.sqlite") as log:
        (n,) = log.notifications.enqueue([note(1)], NOW)
        log.notifications.claim(n.key, NOW)
        log.notifications.sent(n.key, "SM1", NOW)
        before = log.group.commits
        item = ("twilio", "status:SM1:delivered", "SM1", "delivered", Status.DELIVERED, "", NOW)
        other = ("twilio", "status:SMx:delivered", "SMx", "delivered", Status.DELIVERED, "", NOW)
        got = await asyncio.gather(log.group.many(log.record_receipts_once, item),
                                   log.group.many(log.record_receipts_once, item),
                                   log.group.many(log.record_receipts_once, other))
        assert [replayed for replayed, _ in got] == [False, True, False]
        assert got[0][1] is not None and got[0][1].key == n.key and got[2][1] is None  # SMx is not ours
        assert log.group.commits - before == 1
        assert log.notifications.status(n.key) is Status.DELIVERED
        assert [e.what for e in log.timeline.all(n.warning_id)] == ["sms-delivered"]
        assert log.provider_events.seen("twilio", "status:SMx:delivered", NOW)  # remembered all the same


class Provider:
    """A provider that, as each request arrives, looks in the log file (another connection) at the claim."""

    channel = Channel.SMS
    name = "recording"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.on_disk_at_request: list[str | None] = []

    async def send(self, n: Notification, since: datetime, drill: bool, taken=None) -> str:
        self.on_disk_at_request.append(status_on_disk(self.path, n.key))
        await asyncio.sleep(0)
        return "SM" + n.phone[-8:]

    async def find(self, n: Notification, since: datetime, taken=None) -> str | None:
        return None


async def test_a_fan_out_makes_each_request_only_once_its_claim_is_committed_and_groups_its_commits(tmp_path: Path):
    path = tmp_path / "alerts.sqlite"
    provider = Provider(path)
    with NotificationLog(path) as log:
        fresh = log.notifications.enqueue([note(i) for i in range(400)], NOW)
        d = Dispatcher({Channel.SMS: provider}, {Channel.SMS: RateConfig(per_s=100000, burst=64, concurrency=32)},
                       Clock())
        before = log.group.commits
        stop = asyncio.Event()
        runner = asyncio.create_task(run_until(d, stop))
        d.submit(log, fresh)
        async with asyncio.timeout(30):
            while d.backlog:
                await asyncio.sleep(0.01)
        stop.set()
        await runner
        assert provider.on_disk_at_request == ["sending"] * 400
        assert {n.status for n in log.notifications.all()} == {Status.SENT}
        # 800 writes (a claim and a sid each) in far fewer transactions than one per write
        assert log.group.commits - before <= 800 / 4, log.group.commits - before


class BatchProvider(Provider):
    """Takes up to 1,000 numbers a request (as SendSms does), and looks at the claims as each request arrives."""

    batch = 1000

    async def send_batch(self, ns: list[Notification], since: datetime, drill: bool) -> list[str]:
        self.on_disk_at_request += [status_on_disk(self.path, n.key) for n in ns]
        await asyncio.sleep(0)
        return ["ali-sms:1:" + n.phone for n in ns]


async def test_a_batch_is_claimed_before_its_request_and_its_sids_are_recorded_together(tmp_path: Path):
    path = tmp_path / "alerts.sqlite"
    provider = BatchProvider(path)
    with NotificationLog(path) as log:
        fresh = log.notifications.enqueue([note(i) for i in range(600)], NOW)
        for n in fresh:
            n.template = '{"name": "default.warning", "params": {}}'  # one template: one batch
        d = Dispatcher({Channel.SMS: provider}, {Channel.SMS: RateConfig(per_s=100000, burst=64, concurrency=1)},
                       Clock())
        before = log.group.commits
        stop = asyncio.Event()
        runner = asyncio.create_task(run_until(d, stop))
        d.submit(log, fresh)
        async with asyncio.timeout(30):
            while d.backlog:
                await asyncio.sleep(0.01)
        stop.set()
        await runner
        assert provider.on_disk_at_request == ["sending"] * 600
        assert {n.status for n in log.notifications.all()} == {Status.SENT}
        # one claim and one record of the sids per request, whatever the batch's size (a receipt can follow fast)
        assert log.group.commits - before <= 4, log.group.commits - before


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))
