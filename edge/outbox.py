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
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from prometheus_client import Counter, Gauge

from yujing.errors import StoreError
from yujing.log import Limiter
from yujing.model import Reading

log = logging.getLogger("yujing.edge.outbox")
T = TypeVar("T")
DROPPED = Counter("yujing_edge_outbox_dropped_total", "Readings dropped because the outbox was full",
                  ["gateway", "policy"])
DEPTH = Gauge("yujing_edge_outbox_depth", "Readings waiting in the outbox", ["gateway"])

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

    def __init__(self, path: Path, gateway: str, limit: int = 1_000_000, when_full: str = "drop_oldest") -> None:
        self.path = Path(path)
        self.gateway = gateway
        self.limit = limit
        self.when_full = when_full
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._limiter = Limiter(60.0)
        self.changed = asyncio.Event()  # set when rows are added
        self.depth = 0  # rows held; kept exact by the statements themselves (no COUNT(*) per commit)
        self.dropped = 0

    async def __aenter__(self) -> "Outbox":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"outbox {self.path}: {exc}") from exc
        self._db = db
        self.depth = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        row = db.execute("SELECT value FROM counters WHERE name='dropped'").fetchone()
        self.dropped = row[0] if row else 0
        DEPTH.labels(self.gateway).set(self.depth)
        if self.depth:
            self.changed.set()
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:  # one statement stream; fsync happens off the event loop
            assert self._db is not None, "outbox is closed"
            work = asyncio.ensure_future(asyncio.to_thread(fn, self._db, *args))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                await asyncio.wait([work])  # a cancelled caller must not leave the connection mid-statement
                raise

    async def put(self, readings: Sequence[Reading]) -> int:
        """Commit ``readings`` (ids already assigned) in one transaction; returns how many were kept."""
        if not readings:
            return 0
        rows = [(r.id, r.model_dump_json()) for r in readings]
        try:
            kept, dropped = await self._run(self._put, rows)
        except sqlite3.Error as exc:
            raise StoreError(f"outbox {self.path}: {exc}") from exc
        if dropped:
            self.dropped += dropped
            DROPPED.labels(self.gateway, self.when_full).inc(dropped)
            if self._limiter.allow("full"):
                log.warning("outbox full: dropped readings", extra={"kv": {
                    "gateway": self.gateway, "policy": self.when_full, "dropped_total": self.dropped,
                    "limit": self.limit}})
        DEPTH.labels(self.gateway).set(self.depth)
        if kept:
            self.changed.set()
        return kept

    def _put(self, db: sqlite3.Connection, rows: list[tuple[str, str]]) -> tuple[int, int]:
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
            if dropped:
                db.execute("INSERT INTO counters VALUES ('dropped', ?) "
                           "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (dropped,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.depth += len(rows) - (dropped if self.when_full == "drop_oldest" else 0)
        return len(rows), dropped

    async def peek(self, after_seq: int, limit: int) -> list[Row]:
        """The oldest rows with ``seq > after_seq``, in order."""
        rows = await self._run(lambda db: db.execute(
            "SELECT seq, id, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)).fetchall())
        return [Row(*r) for r in rows]

    async def ack(self, seqs: Sequence[int]) -> None:
        """The broker has these (one peeked chunk, so a contiguous seq range): remove them for good.

        Deletes skip the fsync (synchronous=NORMAL for this transaction): a delete lost to a power cut
        only re-sends readings the collector de-duplicates, while every insert keeps its fsync.
        """
        if not seqs:
            return
        lo, hi = min(seqs), max(seqs)

        def _ack(db: sqlite3.Connection) -> int:
            db.execute("PRAGMA synchronous=NORMAL")
            try:
                removed = db.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (lo, hi)).rowcount
            finally:
                db.execute("PRAGMA synchronous=FULL")
            self.depth -= removed

        await self._run(_ack)
        DEPTH.labels(self.gateway).set(self.depth)

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
