"""Send: fan-out to the provider, ordered by priority (red before blue), rate-limited per channel.

Each channel has a priority queue and a pool of workers; a token bucket per channel keeps the request
rate at what the provider allows. Before each request the notification is claimed in the log
('queued' → 'sending', durable), after it the provider's sid is recorded. :meth:`recover` runs once
at start: 'queued' rows are queued again, 'sending' rows are looked up at the provider first.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from alerts.channels import Sender
from alerts.config import RateConfig
from alerts.nflog import Notification, NotificationLog
from alerts.provider import ProviderError
from yujing.clock import Clock

log = logging.getLogger("yujing.alerts.send")

SENT = Counter("yujing_alerts_notifications_total", "Notifications by outcome", ["channel", "outcome"])


class TokenBucket:
    """``per_s`` requests per real second with bursts of ``burst``: the provider's limit is in real time."""

    def __init__(self, per_s: float, burst: int) -> None:
        self.per_s = per_s
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_s)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.per_s)


@dataclass
class Outcome:
    notification: Notification
    sid: str | None
    error: ProviderError | None = None


Hook = Callable[[NotificationLog, Outcome], Awaitable[None]]
Gate = Callable[[NotificationLog, Notification], float]


class Dispatcher:
    """Per-channel queues and workers. ``submit`` from any pipeline; each item carries the log it belongs to."""

    def __init__(self, senders: dict[str, Sender], rates: dict[str, RateConfig], clock: Clock,
                 on_done: Hook | None = None, outage_retry_s: float = 15.0, outage_retries: int = 8,
                 gate: Gate | None = None) -> None:
        self.senders = senders
        self.rates = rates
        self.clock = clock
        self.on_done = on_done
        self._queues: dict[str, asyncio.PriorityQueue] = {c: asyncio.PriorityQueue() for c in senders}
        self._buckets = {c: TokenBucket(rates[c].per_s, rates[c].burst) if c in rates else TokenBucket(50, 20)
                         for c in senders}
        self._order = itertools.count()
        self.in_flight = 0
        self.outage_retry_s = outage_retry_s
        self.outage_retries = outage_retries
        self._deferred: dict[str, int] = {}  # key -> times deferred through a provider outage
        self._later: set[asyncio.Task] = set()
        self.gate = gate  # seconds (scenario) a notification must wait for the provider's per-callee limit

    def submit(self, nflog: NotificationLog, items: list[Notification]) -> None:
        for n in items:
            q = self._queues.get(n.channel)
            if q is None:
                log.error("no sender for channel", extra={"kv": {"channel": n.channel, "key": n.key}})
                continue
            q.put_nowait((-n.priority, n.seq, next(self._order), nflog, n))

    @property
    def backlog(self) -> int:
        return sum(q.qsize() for q in self._queues.values()) + self.in_flight + len(self._later)

    async def recover(self, nflog: NotificationLog) -> tuple[int, int]:
        """Re-queue what a crash left: ('queued' re-queued, 'sending' found at the provider)."""
        requeue: list[Notification] = []
        found = 0
        for n in nflog.notifications.pending():
            if n.status == "sending":
                since = datetime.fromisoformat(n.sending_at) if n.sending_at else datetime.now(UTC)
                sid = await self.senders[n.channel].find(n, since, nflog.notifications.has_sid)
                if sid is not None:
                    nflog.notifications.sent(n.key, sid, self.clock.now())
                    nflog.timeline.add(self.clock.now(), n.warning_id, n.phone, "reconciled",
                                       {"key": n.key, "sid": sid})
                    found += 1
                    continue
                nflog.notifications.requeue(n.key, self.clock.now())
            requeue.append(n)
        self.submit(nflog, requeue)
        return len(requeue), found

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            for channel, q in self._queues.items():
                rate = self.rates.get(channel)
                for _ in range(rate.concurrency if rate else 4):
                    tg.create_task(self._worker(channel, q, stop))
            await stop.wait()
            raise _Stop

    async def _worker(self, channel: str, q: asyncio.PriorityQueue, stop: asyncio.Event) -> None:
        sender = self.senders[channel]
        bucket = self._buckets[channel]
        while True:
            item = await q.get()
            self.in_flight += 1
            try:
                await bucket.take()
                if not q.empty() and q._queue[0] < item:
                    q.put_nowait(item)
                    item = q.get_nowait()
                *_, nflog, n = item
                wait = self.gate(nflog, n) if self.gate is not None else 0.0
                if wait > 0:  # the provider would refuse it now: hold it (still 'queued') until it would not
                    self._hold(nflog, n, wait)
                    continue
                batch = self._batch(q, sender, item)
                if len(batch) > 1:
                    self.in_flight += len(batch) - 1
                    try:
                        await self._send_batch(sender, nflog, [it[-1] for it in batch])
                    finally:
                        self.in_flight -= len(batch) - 1
                    continue
                await self._send_one(sender, nflog, n)
            finally:
                self.in_flight -= 1

    def _hold(self, nflog: NotificationLog, n: Notification, wait_s: float) -> None:
        nflog.timeline.add(self.clock.now(), n.warning_id, n.phone, f"{n.channel}-held", {"wait_s": round(wait_s, 1)})
        SENT.labels(channel=n.channel, outcome="held").inc()

        async def later() -> None:
            await self.clock.sleep(wait_s + 0.5)
            self.submit(nflog, [n])
        task = asyncio.create_task(later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    def _batch(self, q: asyncio.PriorityQueue, sender: Sender, first: tuple) -> list[tuple]:
        """``first`` and the items right behind it in priority order that one request can carry (the same
        approved template and parameters, the same log), when the sender sends batches (SendSms: 1,000)."""
        size = getattr(sender, "batch", 1)
        *_, nflog, n = first
        items = [first]
        if size <= 1 or not n.template:
            return items
        while len(items) < size and not q.empty():
            nxt = q.get_nowait()
            if nxt[-2] is not nflog or nxt[-1].template != n.template:
                q.put_nowait(nxt)  # the next in priority differs: the batch ends here, order kept
                break
            items.append(nxt)
        return items

    async def _send_batch(self, sender: Any, nflog: NotificationLog, ns: list[Notification]) -> None:
        wall = datetime.now(UTC)
        claimed = await nflog.group.run(lambda: [n for n, ok in zip(
            ns, nflog.notifications.claim_many([(n.key, wall) for n in ns]), strict=True) if ok])
        if not claimed:
            return
        try:
            results = await sender.send_batch(claimed, wall, nflog.drill)
        except Exception as raised:  # noqa: BLE001  as in _send_one: never let a worker die
            exc = raised if isinstance(raised, ProviderError) else _unexpected(raised, claimed[0])
            results = [exc] * len(claimed)
        sent = [(n, got) for n, got in zip(claimed, results, strict=True) if not isinstance(got, ProviderError)]
        await self._sent(nflog, sent)  # a batch's sids in one write: its receipts may follow within the second
        for n, got in zip(claimed, results, strict=True):
            if isinstance(got, ProviderError):
                await self._done(sender, nflog, n, wall, None, got)

    async def _send_one(self, sender: Sender, nflog: NotificationLog, n: Notification) -> None:
        wall = datetime.now(UTC)
        # durable before the request: one statement and one commit for this turn's workers' claims (nflog/group.py)
        if not await nflog.group.many(nflog.notifications.claim_many, (n.key, wall)):
            return  # already sending or sent: the log has the one answer
        try:
            sid = await sender.send(n, wall, nflog.drill, nflog.notifications.has_sid)
        except Exception as raised:  # noqa: BLE001  a worker that died would take every channel's workers with it
            exc = raised if isinstance(raised, ProviderError) else _unexpected(raised, n)
            await self._done(sender, nflog, n, wall, None, exc)
            return
        await self._done(sender, nflog, n, wall, sid, None)

    async def _done(self, sender: Sender, nflog: NotificationLog, n: Notification, wall: datetime, sid: str | None,
                    exc: ProviderError | None) -> None:
        if exc is not None:
            tries = self._deferred.get(n.key, 0)
            if exc.retryable and tries < self.outage_retries:  # an outage, not a refusal: keep it, look later
                self._deferred[n.key] = tries + 1
                delay = min(300.0, self.outage_retry_s * 2 ** tries)
                nflog.timeline.add(self.clock.now(), n.warning_id, n.phone, f"{n.channel}-deferred",
                            {"error": str(exc), "retry_in_s": delay})
                SENT.labels(channel=n.channel, outcome="deferred").inc()
                task = asyncio.create_task(self._retry_later(sender, nflog, n, wall, delay))
                self._later.add(task)
                task.add_done_callback(self._later.discard)
                return
            nflog.notifications.failed(n.key, str(exc), self.clock.now())
            nflog.timeline.add(self.clock.now(), n.warning_id, n.phone, f"{n.channel}-failed", str(exc))
            SENT.labels(channel=n.channel, outcome="failed").inc()
            log.warning("notification failed", extra={"kv": {"key": n.key, "error": str(exc)}})
            if self.on_done:
                await self.on_done(nflog, Outcome(n, None, exc))
            return
        assert sid is not None
        await self._sent(nflog, [(n, sid)])

    async def _sent(self, nflog: NotificationLog, sent: list[tuple[Notification, str]]) -> None:
        if not sent:
            return

        now = self.clock.now()
        if len(sent) == 1:  # each sid and its event commit together, in one statement with this turn's others
            await nflog.group.many(nflog.record_sent, (sent[0][0], sent[0][1], now))
        else:
            await nflog.group.run(lambda: nflog.record_sent([(n, sid, now) for n, sid in sent]))
        for n, sid in sent:
            SENT.labels(channel=n.channel, outcome="sent").inc()
            if self.on_done:
                await self.on_done(nflog, Outcome(n, sid))

    async def _retry_later(self, sender: Sender, nflog: NotificationLog, n: Notification, since: datetime,
                           delay: float) -> None:
        """After an outage: if the provider has it after all, it was sent; else queue it again. Until the provider
        can answer that question it is not sent again (it may have arrived); if we stop meanwhile it stays
        'sending' and is reconciled at the next start."""
        for _ in range(self.outage_retries + 1):
            await asyncio.sleep(delay)
            if nflog.notifications.status(n.key) != "sending":  # settled meanwhile (a receipt proved it was sent)
                return
            try:
                sid = await sender.find(n, since, nflog.notifications.has_sid)
            except Exception:  # noqa: BLE001  still unreachable, whatever the library raises: ask again later
                delay = min(300.0, delay * 2)
                continue
            if sid is not None:
                nflog.notifications.sent(n.key, sid, self.clock.now())
                nflog.timeline.add(self.clock.now(), n.warning_id, n.phone, "reconciled", {"key": n.key, "sid": sid})
            else:
                nflog.notifications.requeue(n.key, self.clock.now())
                self.submit(nflog, [n])
            return
        if nflog.notifications.status(n.key) != "sending":
            return
        nflog.notifications.failed(n.key, "provider unreachable: could not tell whether it was sent", self.clock.now())
        SENT.labels(channel=n.channel, outcome="failed").inc()


def _unexpected(exc: Exception, n: Notification) -> ProviderError:
    """An error no sender should raise (a bug, a library's surprise): the request may have gone, so it is treated
    as an outage — looked up at the provider later, never simply sent again."""
    log.error("sending raised an unexpected error; treating it as an outage", exc_info=exc,
              extra={"kv": {"key": n.key}})
    return ProviderError(f"{type(exc).__name__}: {exc}"[:300], retryable=True)


class _Stop(Exception):
    pass


async def run_until(dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    """Run the workers until ``stop``; work in flight is abandoned in 'sending' and reconciled at next start."""
    try:
        await dispatcher.run(stop)
    except* _Stop:
        pass
