"""The durable side of the collector, one SQLite file:

- ``batches``: readings the database could not take yet, replayed oldest first;
- ``seen``: ids of readings already stored or spooled, for ``dedup_window_s`` — so a reading the
  broker redelivers after a crash (stored, but not yet acknowledged) is recognised and skipped.

Writes go through SQLite's WAL: once a method returns, a SIGKILL of the process loses nothing
(``synchronous=NORMAL``; a power cut may lose the last transactions, see README).
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from pathlib import Path

from pydantic import TypeAdapter

from yujing.model import Reading

_READINGS = TypeAdapter(list[Reading])
_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, t REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_t ON seen (t);
"""


class Spool:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.depth = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM batches").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def put(self, batch: list[Reading], now: float) -> None:
        """Spool a batch and remember its ids as seen, in one transaction."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO batches (n, body) VALUES (?, ?)", (len(batch), _READINGS.dump_json(batch)))
            self._db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?)", [(r.id, now) for r in batch])
        self.depth += len(batch)

    def oldest(self, max_readings: int) -> tuple[list[int], list[Reading]]:
        """The oldest spooled batches, up to about ``max_readings`` readings (at least one batch)."""
        seqs: list[int] = []
        out: list[Reading] = []
        for seq, n, body in self._db.execute("SELECT seq, n, body FROM batches ORDER BY seq"):
            if seqs and len(out) + n > max_readings:
                break
            seqs.append(seq)
            out.extend(_READINGS.validate_json(body))
        return seqs, out

    def remove(self, seqs: list[int]) -> int:
        """Forget replayed (or dropped) batches; returns how many readings they held."""
        if not seqs:
            return 0
        marks = ",".join("?" * len(seqs))
        with self._db:
            self._db.execute("BEGIN")
            n = self._db.execute(f"SELECT COALESCE(SUM(n), 0) FROM batches WHERE seq IN ({marks})", seqs).fetchone()[0]
            self._db.execute(f"DELETE FROM batches WHERE seq IN ({marks})", seqs)
        self.depth -= n
        return n

    def oldest_seqs(self, readings: int) -> list[int]:
        """Batches to drop to free about ``readings`` places (drop_oldest policy)."""
        seqs, total = [], 0
        for seq, n in self._db.execute("SELECT seq, n FROM batches ORDER BY seq"):
            if total >= readings:
                break
            seqs.append(seq)
            total += n
        return seqs

    def mark_seen(self, ids: list[str], now: float) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?)", [(i, now) for i in ids])

    def seen_since(self, t: float) -> list[tuple[str, float]]:
        return self._db.execute("SELECT id, t FROM seen WHERE t >= ? ORDER BY t", (t,)).fetchall()

    def forget_seen_before(self, t: float) -> None:
        self._db.execute("DELETE FROM seen WHERE t < ?", (t,))


class Dedup:
    """Reading ids seen within a time window (bounded: ``window_s`` and ``max_ids``), oldest evicted first."""

    def __init__(self, window_s: float, max_ids: int) -> None:
        self.window_s = window_s
        self.max_ids = max_ids
        self._ids: OrderedDict[str, float] = OrderedDict()

    def load(self, rows: list[tuple[str, float]]) -> None:
        for i, t in rows:
            self._ids[i] = t
        self._trim(rows[-1][1] if rows else 0.0)

    def __len__(self) -> int:
        return len(self._ids)

    def fresh(self, readings: list[Reading], now: float) -> list[Reading]:
        """The readings not seen before; remembers them."""
        out = []
        ids = self._ids
        for r in readings:
            if r.id in ids:
                continue
            ids[r.id] = now
            out.append(r)
        if len(ids) > self.max_ids:
            self._trim(now)
        return out

    def _trim(self, now: float) -> None:
        ids, horizon = self._ids, now - self.window_s
        while ids and (len(ids) > self.max_ids or next(iter(ids.values())) < horizon):
            ids.popitem(last=False)

    def expire(self, now: float) -> None:
        self._trim(now)
