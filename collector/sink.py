"""Batches in, database out: write directly while the database answers, spool while it does not,
replay the spool in order with backoff and jitter, and acknowledge each batch only once it is durable.

Pure orchestration over two seams (a Store and a Spool); no MQTT here: ``ack`` is a callback.

When the spool's own disk refuses a write (full, I/O error) while the database is away, the batch is
held unacknowledged and retried with backoff; the batches behind it wait in the queue, and the broker
stops sending at ``receive_maximum``: nothing is lost, nothing is acknowledged that is not durable. It
resumes by itself once the disk has room or the database answers again. Under ``drop_oldest`` a full
disk frees room by the oldest spooled batches first (counted as lost, reason ``disk-full``).

While the database answers and nothing is spooled, up to ``writes_in_flight`` direct writes run at once
(a write's round trip, not the collector's CPU, bounded one writer: 0.9 of the drain was spent waiting).
They are finished in arrival order: each acknowledged once stored, or spooled if its write failed, so
the points of two batches may reach the database in either order (each carries its own timestamp).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from collector import metrics as m
from collector.config import CollectorConfig, SpoolFull
from collector.rows import Row
from yujing.wire import LossReason
from collector.loss import LossReport
from collector.spool import Spool, SpoolUnwritable
from collector.stores.base import BatchRejected, Store
from yujing.clock import Clock
from yujing.errors import StoreError
from yujing.log import Limiter

log = logging.getLogger("yujing.collector")


@dataclass
class Batch:
    readings: list[Row] = field(default_factory=list)  # see collector.rows
    acks: list[object] = field(default_factory=list)  # opaque message handles, acknowledged when durable


class Sink:
    def __init__(self, cfg: CollectorConfig, store: Store, spool: Spool, clock: Clock,
                 ack: Callable[[list[object]], None], loss: LossReport | None = None) -> None:
        self.cfg, self.store, self.spool, self.clock, self.ack, self.loss = cfg, store, spool, clock, ack, loss
        self.queue: asyncio.Queue[Batch] = asyncio.Queue()
        self.db_up = True
        self._backoff_s = 0.0
        self._retry_at = 0.0  # monotonic
        self._limiter = Limiter(30.0)
        self._writes = 0
        self._held: list[Batch] = []  # taken from the queue but not durable (spool unwritable): unacknowledged
        self._inflight: deque[tuple[Batch, asyncio.Task[StoreError | None]]] = deque()  # direct writes, in order
        self.spool_writable = True
        self._disk_backoff_s = 0.0
        self._disk_retry_at = 0.0  # monotonic
        m.SPOOL_DEPTH.set(spool.depth)
        m.DB_UP.set(1)
        m.SPOOL_WRITABLE.set(1)

    @property
    def spool_full(self) -> bool:
        return self.spool.depth >= self.cfg.spool_max_readings

    async def run(self, stopping: asyncio.Event) -> None:
        """Until ``stopping`` is set and the queue is empty: every queued batch ends up stored or spooled."""
        while not (stopping.is_set() and self.queue.empty() and not self._held and not self._inflight):
            if self.loss is not None:
                self.loss.flush()
            if self._inflight and (self._inflight[0][1].done() or self.spool.depth or self._held
                                   or stopping.is_set()):
                await self._finish_oldest()  # in order; and all of them before anything but direct writes
                continue
            if self.spool.depth and time.monotonic() >= self._retry_at:
                await self._replay()
                continue
            if self._held:  # the spool's disk refused them: retry them first, the rest waits behind them
                if time.monotonic() >= self._disk_retry_at:
                    self.spool.reclaim()
                    while self._held and await self._durable(self._held[0].readings):
                        self._done(self._held.pop(0))
                elif await self._pause(stopping, min(self._disk_retry_at,
                                                     self._retry_at if self.spool.depth else float("inf"))):
                    return  # unacknowledged batches stay with the broker
                continue
            if self.spool_full and self.cfg.spool_full is SpoolFull.BLOCK:
                # Intake pauses: nothing is acknowledged, the broker stops sending at receive_maximum.
                # Leave the queue alone: those batches wait, unacknowledged, until the spool drains.
                if await self._pause(stopping, self._retry_at):
                    return  # unacknowledged batches stay with the broker
                continue
            batch = await self._wait(self._retry_at - time.monotonic() if self.spool.depth else 0.25, stopping)
            if batch is None:
                continue
            if self.spool.depth or not batch.readings:
                await self.take(batch)
            else:
                self._inflight.append((batch, asyncio.ensure_future(self._direct(batch.readings))))
                if len(self._inflight) >= self.cfg.writes_in_flight:
                    await self._finish_oldest()

    @staticmethod
    async def _pause(stopping: asyncio.Event, until: float) -> bool:
        """Wait until ``until`` (monotonic) or stop; True when stopping."""
        try:
            async with asyncio.timeout(max(0.01, until - time.monotonic())):
                await stopping.wait()
        except TimeoutError:
            pass
        return stopping.is_set()

    async def _wait(self, timeout: float | None, stopping: asyncio.Event) -> Batch | None:
        if not self.queue.empty():
            return self.queue.get_nowait()
        if timeout is None:
            timeout = max(0.01, self._retry_at - time.monotonic())
        get = asyncio.ensure_future(self.queue.get())
        stop = asyncio.ensure_future(stopping.wait())
        wake = {get, stop} | ({self._inflight[0][1]} if self._inflight else set())  # or the oldest write is done
        done, _ = await asyncio.wait(wake, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if get in done:
            return get.result()
        get.cancel()
        return None

    async def take(self, batch: Batch) -> None:
        """Store or spool a batch taken from the queue, then acknowledge it; if neither is possible, hold it."""
        self._done(batch, await self._durable(batch.readings))

    async def _direct(self, readings: list[Row]) -> StoreError | None:
        """One direct write, beside others in flight: its StoreError is returned for :meth:`_finish_oldest`."""
        try:
            await self._write(readings, "direct")
        except BatchRejected as e:
            self._rejected(e, len(readings))
        except StoreError as e:
            return e
        return None

    async def _finish_oldest(self) -> None:
        """The oldest direct write in flight: acknowledged once stored, else spooled (or held) like any batch."""
        batch, write = self._inflight.popleft()
        error = await write
        if error is None:
            self._seen(batch.readings)
            self._done(batch)
        else:
            self._down(error)
            self._done(batch, self._spool(batch.readings))

    def _done(self, batch: Batch, durable: bool = True) -> None:
        if not durable:
            self._held.append(batch)  # unacknowledged, and not task_done: the queue is not done while it is held
            return
        self.ack(batch.acks)
        self.queue.task_done()
        self._writes += 1
        if self._writes % 200 == 0:
            try:
                self.spool.forget_seen_before(self.clock.timestamp() - self.cfg.dedup_window_s)
            except SpoolUnwritable as e:
                self._unwritable(e)

    async def _durable(self, readings: list[Row]) -> bool:
        """Write to the database or to the spool; False when neither took them."""
        if not readings:
            return True
        if self.spool.depth:
            return self._spool(readings)  # keep order: new readings queue behind the spooled ones
        try:
            await self._write(readings, "direct")
        except BatchRejected as e:
            self._rejected(e, len(readings))
            return True
        except StoreError as e:
            self._down(e)
            return self._spool(readings)
        self._seen(readings)
        return True

    def _seen(self, readings: list[Row]) -> None:
        try:
            self.spool.mark_seen([r.id for r in readings], self.clock.timestamp())
        except SpoolUnwritable as e:  # stored; only the restart-proof memory of these ids is missing
            self._unwritable(e)

    async def _write(self, readings: list[Row], path: str) -> None:
        t0 = time.perf_counter()
        await self.store.write(readings)
        m.WRITE_SECONDS.observe(time.perf_counter() - t0)
        m.BATCH_SIZE.observe(len(readings))
        m.READINGS_OUT.labels(path).inc(len(readings))
        if not self.db_up:
            log.info("database back", extra={"kv": {"spool": self.spool.depth}})
        self.db_up = True
        m.DB_UP.set(1)

    def _spool(self, readings: list[Row]) -> bool:
        """Spool ``readings``; False when the spool's file refused them (they stay unacknowledged)."""
        drop_oldest = self.cfg.spool_full is SpoolFull.DROP_OLDEST
        try:
            if self.spool_full and drop_oldest:
                self._drop(len(readings), LossReason.SPOOL_FULL)
            try:
                self.spool.put(readings, self.clock.timestamp())
            except SpoolUnwritable:
                if not (drop_oldest and self._drop(len(readings), LossReason.DISK_FULL)):
                    raise
                self.spool.put(readings, self.clock.timestamp())  # into the room the dropped batches left
        except SpoolUnwritable as e:
            self._unwritable(e)
            return False
        if not self.spool_writable:
            log.info("spool writable again", extra={"kv": {"spool": self.spool.depth}})
        self.spool_writable = True
        self._disk_backoff_s = 0.0
        m.SPOOL_WRITABLE.set(1)
        m.SPOOLED.inc(len(readings))
        m.SPOOL_DEPTH.set(self.spool.depth)
        return True

    def _drop(self, readings: int, reason: str) -> int:
        """The when-full policy drop_oldest: discard the oldest spooled readings, counted, logged, reported."""
        dropped = self.spool.drop_oldest(readings, reason)
        if dropped:
            m.SPOOL_DROPPED.inc(dropped)
            m.SPOOL_DEPTH.set(self.spool.depth)
            if self._limiter.allow(("dropped", reason)):
                log.error("spool full: dropped oldest readings" if reason == "spool-full"
                          else "spool disk full: dropped oldest readings",
                          extra={"kv": {"dropped": dropped, "dropped_total": self.spool.dropped, "reason": reason,
                                        "max": self.cfg.spool_max_readings,
                                        "suppressed": self._limiter.take_suppressed(("dropped", reason))}})
            if self.loss is not None:
                self.loss.flush()
        return dropped

    def _unwritable(self, e: SpoolUnwritable) -> None:
        """The spool's file refused a write: count it, say so once, retry with backoff."""
        m.SPOOL_UNWRITABLE.inc()
        self._disk_backoff_s = min(self.cfg.retry_max_s, max(self.cfg.retry_initial_s, self._disk_backoff_s * 2))
        self._disk_retry_at = time.monotonic() + self.clock.real_seconds(self._disk_backoff_s)
        if self._limiter.allow("unwritable") or self.spool_writable:  # once per episode, then rate-limited
            log.error("spool cannot be written (disk full?): not acknowledging, the broker keeps the readings",
                      extra={"kv": {"error": str(e), "db_up": self.db_up, "spool": self.spool.depth,
                                    "suppressed": self._limiter.take_suppressed("unwritable")}})
        self.spool_writable = False
        m.SPOOL_WRITABLE.set(0)

    async def _replay(self) -> None:
        seqs, readings = self.spool.oldest(self.cfg.replay_chunk)
        try:
            await self._write(readings, "replay")
        except BatchRejected as e:
            self._rejected(e, len(readings))
        except StoreError as e:
            self._down(e)
            return
        try:
            self.spool.remove(seqs)
        except SpoolUnwritable as e:  # stored; forgotten in memory, the DELETE is retried with the next one
            self._unwritable(e)
        m.SPOOL_DEPTH.set(self.spool.depth)
        self._backoff_s = 0.0
        if not self.spool.depth:
            log.info("spool replayed")

    def _down(self, e: StoreError) -> None:
        """Schedule the next try: exponential backoff with full jitter, on the scenario clock."""
        self._backoff_s = min(self.cfg.retry_max_s, max(self.cfg.retry_initial_s, self._backoff_s * 2))
        delay = self.clock.real_seconds(random.uniform(self._backoff_s / 2, self._backoff_s))
        self._retry_at = time.monotonic() + delay
        if self._limiter.allow("down") or self.db_up:
            log.warning("database unavailable; spooling", extra={"kv": {"error": str(e), "retry_s": round(delay, 2),
                                                                          "spool": self.spool.depth}})
        self.db_up = False
        m.DB_UP.set(0)

    def _rejected(self, e: BatchRejected, n: int) -> None:
        m.REJECTED.labels("store_rejected").inc(n)
        if self._limiter.allow("rejected"):
            log.error("database refused a batch for good; dropped", extra={"kv": {"readings": n, "error": str(e)}})
