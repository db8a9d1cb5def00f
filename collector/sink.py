"""Batches in, database out: write directly while the database answers, spool while it does not,
replay the spool in order with backoff and jitter, and acknowledge each batch only once it is durable.

Pure orchestration over two seams (a Store and a Spool); no MQTT here: ``ack`` is a callback.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from collector import metrics as m
from collector.config import CollectorConfig, SpoolFull
from collector.spool import Spool
from collector.stores.base import BatchRejected, Store
from yujing.clock import Clock
from yujing.errors import StoreError
from yujing.log import Limiter
from yujing.model import Reading

log = logging.getLogger("yujing.collector")


@dataclass
class Batch:
    readings: list[Reading] = field(default_factory=list)
    acks: list[object] = field(default_factory=list)  # opaque message handles, acknowledged when durable


class Sink:
    def __init__(self, cfg: CollectorConfig, store: Store, spool: Spool, clock: Clock,
                 ack: Callable[[list[object]], None]) -> None:
        self.cfg, self.store, self.spool, self.clock, self.ack = cfg, store, spool, clock, ack
        self.queue: asyncio.Queue[Batch] = asyncio.Queue()
        self.db_up = True
        self._backoff_s = 0.0
        self._retry_at = 0.0  # monotonic
        self._limiter = Limiter(30.0)
        self._writes = 0
        m.SPOOL_DEPTH.set(spool.depth)
        m.DB_UP.set(1)

    @property
    def spool_full(self) -> bool:
        return self.spool.depth >= self.cfg.spool_max_readings

    async def run(self, stopping: asyncio.Event) -> None:
        """Until ``stopping`` is set and the queue is empty: every queued batch ends up stored or spooled."""
        while not (stopping.is_set() and self.queue.empty()):
            if self.spool.depth and time.monotonic() >= self._retry_at:
                await self._replay()
                continue
            if self.spool_full and self.cfg.spool_full is SpoolFull.BLOCK:
                # Intake pauses: nothing is acknowledged, the broker stops sending at receive_maximum.
                try:  # leave the queue alone: those batches wait, unacknowledged, until the spool drains
                    await asyncio.wait_for(stopping.wait(), max(0.01, self._retry_at - time.monotonic()))
                except TimeoutError:
                    pass
                if stopping.is_set():
                    return  # unacknowledged batches stay with the broker
                continue
            batch = await self._wait(self._retry_at - time.monotonic() if self.spool.depth else 0.25, stopping)
            if batch is not None:
                await self.take(batch)

    async def _wait(self, timeout: float | None, stopping: asyncio.Event) -> Batch | None:
        if not self.queue.empty():
            return self.queue.get_nowait()
        if timeout is None:
            timeout = max(0.01, self._retry_at - time.monotonic())
        get = asyncio.ensure_future(self.queue.get())
        stop = asyncio.ensure_future(stopping.wait())
        done, _ = await asyncio.wait({get, stop}, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if get in done:
            return get.result()
        get.cancel()
        return None

    async def take(self, batch: Batch) -> None:
        if batch.readings:
            if self.spool.depth:
                self._spool(batch.readings)  # keep order: new readings queue behind the spooled ones
            else:
                try:
                    await self._write(batch.readings, "direct")
                    self.spool.mark_seen([r.id for r in batch.readings], self.clock.timestamp())
                except BatchRejected as e:
                    self._rejected(e, len(batch.readings))
                except StoreError as e:
                    self._down(e)
                    self._spool(batch.readings)
        self.ack(batch.acks)
        self.queue.task_done()
        self._writes += 1
        if self._writes % 200 == 0:
            self.spool.forget_seen_before(self.clock.timestamp() - self.cfg.dedup_window_s)

    async def _write(self, readings: list[Reading], path: str) -> None:
        t0 = time.perf_counter()
        await self.store.write(readings)
        m.WRITE_SECONDS.observe(time.perf_counter() - t0)
        m.BATCH_SIZE.observe(len(readings))
        m.READINGS_OUT.labels(path).inc(len(readings))
        if not self.db_up:
            log.info("database back", extra={"kv": {"spool": self.spool.depth}})
        self.db_up = True
        m.DB_UP.set(1)

    def _spool(self, readings: list[Reading]) -> None:
        if self.spool_full and self.cfg.spool_full is SpoolFull.DROP_OLDEST:
            dropped = self.spool.remove(self.spool.oldest_seqs(len(readings)))
            m.SPOOL_DROPPED.inc(dropped)
            log.error("spool full: dropped oldest readings", extra={"kv": {"dropped": dropped,
                                                                             "max": self.cfg.spool_max_readings}})
        self.spool.put(readings, self.clock.timestamp())
        m.SPOOLED.inc(len(readings))
        m.SPOOL_DEPTH.set(self.spool.depth)

    async def _replay(self) -> None:
        seqs, readings = self.spool.oldest(self.cfg.replay_chunk)
        try:
            await self._write(readings, "replay")
        except BatchRejected as e:
            self._rejected(e, len(readings))
        except StoreError as e:
            self._down(e)
            return
        self.spool.remove(seqs)
        m.SPOOL_DEPTH.set(self.spool.depth)
        self._backoff_s = 0.0
        if not self.spool.depth:
            log.info("spool replayed")

    def _down(self, e: StoreError) -> None:
        """Schedule the next try: exponential backoff with full jitter, on the scenario clock."""
        self._backoff_s = min(self.cfg.retry_max_s, max(self.cfg.retry_initial_s, self._backoff_s * 2))
        delay = self.clock.real_seconds(random.uniform(self._backoff_s / 2, self._backoff_s))
        self._retry_at = time.monotonic() + delay
        if self.db_up or self._limiter.allow("down"):
            log.warning("database unavailable; spooling", extra={"kv": {"error": str(e), "retry_s": round(delay, 2),
                                                                          "spool": self.spool.depth}})
        self.db_up = False
        m.DB_UP.set(0)

    def _rejected(self, e: BatchRejected, n: int) -> None:
        m.REJECTED.labels("store_rejected").inc(n)
        if self._limiter.allow("rejected"):
            log.error("database refused a batch for good; dropped", extra={"kv": {"readings": n, "error": str(e)}})
