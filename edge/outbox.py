"""The durable outbox: every reading is committed here before it is published, and removed on PUBACK.

SQLite in WAL mode with ``synchronous=FULL``: gateways lose power, not just
processes. With NORMAL, WAL survives a process crash but a power cut may roll
back the last transactions — readings the poller already considered safe.
FULL costs one fsync per commit; commits are grouped (one per write of a poll
or of several polls, see :meth:`Outbox.put`), so that is a few fsyncs a
second at most. A delete rolled back by a power cut only causes a re-send,
which the collector de-duplicates on ``Reading.id``.

Rows are ordered by ``seq`` (INTEGER PRIMARY KEY, monotonic): the backlog
drains in the order it was committed. When ``limit`` rows are held, the
``when_full`` policy drops the oldest rows (keep the present: warnings need
the latest data) or refuses the newest; every dropped reading is counted and
logged (rate-limited).

When the file refuses a write (disk full, I/O error) the agent carries on: readings
are held in memory, in order, up to ``hold_limit``, and committed with the next
put once a write succeeds again (at most one try a second); beyond the bound the
same ``when_full`` policy drops, counted in ``dropped`` like any forced loss (the
count is persisted with the next successful commit). On a full disk even the
DELETE of an acknowledged row can fail (the WAL must grow): such rows are never
peeked again and deleted with a later ack. ``lost`` is set on every drop, so the
heartbeat can report it promptly.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from prometheus_client import Counter, Gauge

from yujing.errors import StoreError
from yujing.log import Limiter
from yujing.model import Reading
from yujing.sqlite import Room, Sync, Writer, open_db, reclaim

log = logging.getLogger("yujing.edge.outbox")
T = TypeVar("T")
DROPPED = Counter("yujing_edge_outbox_dropped_total", "Readings dropped because the outbox was full",
                  ["gateway", "policy"])
DEPTH = Gauge("yujing_edge_outbox_depth", "Readings waiting in the outbox (held in memory included)", ["gateway"])
UNWRITABLE = Counter("yujing_edge_outbox_unwritable_total",
                     "Outbox writes its file refused (disk full, I/O error); readings held in memory", ["gateway"])
_RETRY_S = 1.0  # between tries of a file that refused a write

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    id: str
    body: str  # the Reading's JSON, exactly as it will be re-sent


class Outbox:
    """``async with Outbox(path, gateway) as ob:`` — put(), peek(), ack(); safe to kill at any point."""

    def __init__(self, path: Path, gateway: str, limit: int = 1_000_000, when_full: str = "drop_oldest",
                 hold_limit: int | None = None) -> None:
        self.path = Path(path)
        self.gateway = gateway
        self.limit = limit
        self.when_full = when_full
        self.hold_limit = hold_limit if hold_limit is not None else max(10, min(10_000, limit // 10))
        self._held: list[tuple[str, str]] = []  # (id, body) the file refused, oldest first; bounded by hold_limit
        self._unsaved_dropped = 0  # counted, not yet in the counters table (the file refused the write)
        self._gone: list[tuple[int, int]] = []  # acknowledged seq ranges whose DELETE the file refused
        self._retry_at = 0.0  # monotonic: no write is tried before (the file refused one)
        self.lost = asyncio.Event()  # set when readings are dropped
        self._db: sqlite3.Connection | None = None  # used only on the writer's thread once open
        self._writer: Writer
        self._limiter = Limiter(60.0)
        self.changed = asyncio.Event()  # set when rows are added
        self.depth = 0  # rows held; kept exact by the statements themselves (no COUNT(*) per commit)
        self.dropped = 0

    async def __aenter__(self) -> "Outbox":
        # FULL: gateways lose power, not just processes (see the module docstring)
        self._db = db = open_db(self.path, _SCHEMA, sync=Sync.FULL, what="outbox", threads=True)
        self._writer = Writer(f"outbox-{self.gateway}")
        self._room = Room(db, self.path)  # checked after each commit, on the writer thread
        self.depth = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        row = db.execute("SELECT value FROM counters WHERE name='dropped'").fetchone()
        self.dropped = row[0] if row else 0
        DEPTH.labels(self.gateway).set(self.depth)
        if self.depth:
            self.changed.set()
        return self

    @property
    def held(self) -> int:
        """Readings held in memory because the file refused them."""
        return len(self._held)

    async def __aexit__(self, *exc: object) -> None:
        if self._held or self._unsaved_dropped:
            self._retry_at = min(self._retry_at, time.monotonic())
            await self.put([])  # a last try; what still fails is lost, and said so
            if self._held:
                self._drop(len(self._held), "disk_full")
                self._held.clear()
            if self._unsaved_dropped:
                log.error("outbox closed with readings it could not store", extra={"kv": {
                    "gateway": self.gateway, "dropped_total": self.dropped, "not_persisted": self._unsaved_dropped}})
        if self._db is not None:
            db, self._db = self._db, None
            await self._writer.run(db.close)  # after every statement handed over before
            self._writer.close()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(db, *args)`` on the writer thread, in the order handed over: fsync happens off the event loop."""
        assert self._db is not None, "outbox is closed"
        work = asyncio.wrap_future(self._writer.submit(fn, self._db, *args))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.wait([work])  # a cancelled caller's write is still made (a put is never half-lost)
            raise

    async def put(self, readings: Sequence[Reading]) -> int:
        """Commit ``readings`` (ids already assigned), behind any held ones, in one transaction; returns how
        many rows were committed. If the file refuses, they are held in memory (bounded) instead."""
        rows = self._held + [(r.id, r.model_dump_json()) for r in readings]
        self._held = []
        if not rows and not self._unsaved_dropped:
            return 0
        if time.monotonic() < self._retry_at:
            self._hold(rows)
            return 0
        if self._retry_at:
            await self._run(reclaim)
        try:
            kept, dropped = await self._run(self._put, rows, self._unsaved_dropped)
        except sqlite3.Error as exc:
            self._hold(rows, exc)
            return 0
        if self._retry_at:
            self._retry_at = 0.0
            log.info("outbox writable again", extra={"kv": {"gateway": self.gateway, "stored": kept}})
        self._unsaved_dropped = 0
        if dropped:
            self._drop(dropped, self.when_full, saved=True)
            if self._limiter.allow("full"):
                log.warning("outbox full: dropped readings", extra={"kv": {
                    "gateway": self.gateway, "policy": self.when_full, "dropped_total": self.dropped,
                    "limit": self.limit}})
        DEPTH.labels(self.gateway).set(self.depth + len(self._held))
        if kept:
            self.changed.set()
        return kept

    def _hold(self, rows: list[tuple[str, str]], exc: sqlite3.Error | None = None) -> None:
        """Keep rows the file refused in memory, in order; beyond ``hold_limit`` the when_full policy drops."""
        over = len(rows) - self.hold_limit
        if over > 0:
            rows = rows[:self.hold_limit] if self.when_full == "drop_newest" else rows[over:]
            self._drop(over, "disk_full")
        self._held = rows
        DEPTH.labels(self.gateway).set(self.depth + len(rows))
        if exc is None:
            return
        UNWRITABLE.labels(self.gateway).inc()
        self._retry_at = time.monotonic() + _RETRY_S
        if self._limiter.allow("unwritable"):
            log.error("outbox cannot be written (disk full?): holding readings in memory", extra={"kv": {
                "gateway": self.gateway, "error": str(exc), "held": len(rows), "hold_limit": self.hold_limit,
                "dropped_total": self.dropped, "suppressed": self._limiter.take_suppressed("unwritable")}})

    def _drop(self, n: int, policy: str, saved: bool = False) -> None:
        """Count ``n`` readings lost (``saved``: already added to the counters table in the same commit)."""
        self.dropped += n
        if not saved:
            self._unsaved_dropped += n
            if self._limiter.allow("drop-held"):
                log.error("outbox unwritable and memory bound reached: dropped readings", extra={"kv": {
                    "gateway": self.gateway, "policy": self.when_full, "dropped_total": self.dropped,
                    "hold_limit": self.hold_limit}})
        DROPPED.labels(self.gateway, policy).inc(n)
        self.lost.set()

    def _put(self, db: sqlite3.Connection, rows: list[tuple[str, str]], unsaved: int) -> tuple[int, int]:
        over = self.depth + len(rows) - self.limit
        dropped = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            if over > 0 and self.when_full == "drop_newest":
                dropped = min(over, len(rows))
                rows = rows[: len(rows) - dropped]
            elif over > 0:
                dropped = over
                dropped = db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                                     (over,)).rowcount
            db.executemany("INSERT INTO outbox (id, body) VALUES (?, ?)", rows)
            if dropped or unsaved:
                db.execute("INSERT INTO counters VALUES ('dropped', ?) "
                           "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (dropped + unsaved,))
            db.execute("COMMIT")
            self._room.check()
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                db.execute("ROLLBACK")
            raise
        self.depth += len(rows) - (dropped if self.when_full == "drop_oldest" else 0)
        return len(rows), dropped

    async def peek(self, after_seq: int, limit: int) -> list[Row]:
        """The oldest rows with ``seq > after_seq``, in order (acknowledged ones never, even if not yet deleted)."""
        while True:
            rows = await self._run(lambda db, a=after_seq: db.execute(
                "SELECT seq, id, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (a, limit)).fetchall())
            kept = [Row(*r) for r in rows if not any(lo <= r[0] <= hi for lo, hi in self._gone)]
            if kept or len(rows) < limit:
                return kept
            after_seq = rows[-1][0]

    async def ack(self, seqs: Sequence[int]) -> None:
        """The broker has these (one peeked chunk, so a contiguous seq range): remove them for good.

        Deletes skip the fsync (synchronous=NORMAL for this transaction): a delete lost to a power cut
        only re-sends readings the collector de-duplicates, while every insert keeps its fsync.
        """
        if not seqs:
            return
        self._gone.append((min(seqs), max(seqs)))
        if time.monotonic() < self._retry_at:
            return  # the file refused a write a moment ago: delete with a later ack

        def _ack(db: sqlite3.Connection, ranges: list[tuple[int, int]]) -> None:
            db.execute("PRAGMA synchronous=NORMAL")
            try:
                with db:
                    db.execute("BEGIN")
                    removed = sum(db.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", r).rowcount
                                  for r in ranges)
            finally:
                db.execute("PRAGMA synchronous=FULL")
            self.depth -= removed
            self._room.check()

        gone = list(self._gone)
        try:
            await self._run(_ack, gone)
        except sqlite3.Error as exc:  # the broker has them: never peeked again, deleted with a later ack
            UNWRITABLE.labels(self.gateway).inc()
            self._retry_at = time.monotonic() + _RETRY_S
            if self._limiter.allow("unwritable"):
                log.error("outbox cannot be written (disk full?): acknowledged readings deleted later",
                          extra={"kv": {"gateway": self.gateway, "error": str(exc)}})
            return
        del self._gone[:len(gone)]
        DEPTH.labels(self.gateway).set(self.depth + len(self._held))

    async def count(self) -> int:
        return await self._run(lambda db: db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


class GroupCommit:
    """Polls finishing together share one transaction (one fsync): ``await gc.put(readings)`` returns once
    the readings are durable. Run :meth:`run` as a task for as long as puts may come."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._pending: list[tuple[Sequence[Reading], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()

    async def put(self, readings: Sequence[Reading]) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((readings, fut))
        self._wake.set()
        await fut

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            try:
                await self.outbox.put([r for rs, _ in batch for r in rs])
            except StoreError as exc:  # each waiting poller hears of it; the writer carries on
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            except BaseException:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(StoreError("outbox closed"))
                raise
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
