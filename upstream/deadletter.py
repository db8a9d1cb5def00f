"""Refused CAP documents, for the duty office to inspect: when, from whom, by which route, why, the bytes.

    dead = DeadLetters(path, max_rows=10_000, max_bytes=64 * 1024 * 1024)
    dead.add(now, "zx-met", "post", refusal, raw)       # kept; the oldest dropped past either bound
    dead.entries(100)                                  # newest first, without the bytes

Anyone who can reach ``POST /cap/…`` can be refused, authenticated or not, so the store is bounded: each
document's first 64 KB at most, and the newest ``max_rows`` documents within ``max_bytes`` of kept bytes. Past
either, the oldest go in the same transaction as the newest comes in — counted
(``yujing_upstream_deadletter_dropped_total``) and logged once a minute. SQLite reuses the freed pages, so the
file stops growing at about the bound. ``Sync.NORMAL``: a power cut may lose the last few, each already
answered with its reason and counted; a flood of refusals does not cost an fsync each.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from prometheus_client import Counter

from upstream.cap import Refusal
from yujing.log import Limiter
from yujing.sqlite import Sync, open_db

log = logging.getLogger("yujing.upstream")
DROPPED = Counter("yujing_upstream_deadletter_dropped_total",
                  "Refused CAP documents dropped from the dead-letter store, oldest first, to keep within its bounds")
_limiter = Limiter(60.0)

SCHEMA = """
CREATE TABLE IF NOT EXISTS deadletter (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL,
  source TEXT NOT NULL, route TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
  size INTEGER NOT NULL, body BLOB NOT NULL);
"""


class DeadLetters:
    KEEP_BYTES = 64 * 1024  # an oversized document is kept in part: the store must not be the next disk-filler

    def __init__(self, path: Path | str, *, max_rows: int = 10_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        if max_rows < 1 or max_bytes < self.KEEP_BYTES:
            raise ValueError(f"dead letters: keep at least 1 row and {self.KEEP_BYTES} bytes")
        self.path, self.max_rows, self.max_bytes = Path(path), max_rows, max_bytes
        self.db = open_db(self.path, SCHEMA, sync=Sync.NORMAL, what="upstream dead letters", threads=True)
        self._lock = threading.Lock()
        with self._lock:
            self._rows, self._bytes = self._totals()
            self._add_and_trim(None)  # bounds tightened since the last run apply now

    def add(self, at: datetime, source: str, route: str, refusal: Refusal, body: bytes) -> None:
        row = (at.isoformat(), source, route, refusal.reason.value, refusal.detail, len(body), body[:self.KEEP_BYTES])
        with self._lock:
            self._add_and_trim(row)

    def entries(self, limit: int = 100) -> list[dict[str, object]]:
        rows = self.db.execute("SELECT seq, at, source, route, reason, detail, size FROM deadletter"
                               " ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        keys = ("seq", "at", "source", "route", "reason", "detail", "size")
        return [dict(zip(keys, r)) for r in rows]

    def close(self) -> None:
        self.db.close()

    def _totals(self) -> tuple[int, int]:
        rows, size = self.db.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM deadletter").fetchone()
        return int(rows), int(size)

    def _add_and_trim(self, row: tuple[object, ...] | None) -> None:
        """Insert ``row`` (if any) and drop the oldest past the bounds, in one transaction (under the lock)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            if row is not None:
                self.db.execute("INSERT INTO deadletter(at, source, route, reason, detail, size, body)"
                                " VALUES (?,?,?,?,?,?,?)", row)
                self._rows, self._bytes = self._rows + 1, self._bytes + len(row[-1])  # type: ignore[arg-type]
            dropped = self._trim()
            self.db.execute("COMMIT")
        except sqlite3.Error:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            self._rows, self._bytes = self._totals()
            raise
        if dropped:
            DROPPED.inc(dropped)
            if _limiter.allow("dropped"):
                log.warning("dead-letter store full: the oldest refused documents dropped",
                            extra={"kv": {"dropped": dropped, "rows": self._rows, "bytes": self._bytes,
                                          "max_rows": self.max_rows, "max_bytes": self.max_bytes}})

    def _trim(self) -> int:
        dropped, last = 0, 0
        while self._rows > self.max_rows or self._bytes > self.max_bytes:
            batch = self.db.execute("SELECT seq, length(body) FROM deadletter WHERE seq > ? ORDER BY seq LIMIT 256",
                                    (last,)).fetchall()
            if not batch:
                break
            for seq, size in batch:
                if self._rows <= self.max_rows and self._bytes <= self.max_bytes:
                    break
                last, dropped = seq, dropped + 1
                self._rows, self._bytes = self._rows - 1, self._bytes - size
        if dropped:
            self.db.execute("DELETE FROM deadletter WHERE seq <= ?", (last,))
        return dropped
