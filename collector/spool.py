"""The durable side of the collector, one SQLite file:

- ``batches``: readings the database could not take yet, replayed oldest first;
- ``seen_ids``: ids of readings already stored or spooled, for ``dedup_window_s`` — so a reading the
  broker redelivers after a crash (stored, but not yet acknowledged) is recognised and skipped. One row
  per batch (its ids as a JSON array): a row per id cost a quarter of the collector's CPU on batched uplinks.

- ``loss``: how many readings a bound forced out (drop_oldest, or a full disk under drop_oldest) and how
  many of those the broker has been told about, so the cumulative loss report survives restarts.

Writes go through SQLite's WAL: once a method returns, a SIGKILL of the process loses nothing
(``synchronous=NORMAL``; a power cut may lose the last transactions, see README).

A write the disk refuses (full, I/O error) raises :class:`SpoolUnwritable` and changes nothing; the
caller keeps the batch unacknowledged. On a full disk even a DELETE can fail (the WAL must grow):
batches already replayed are then forgotten in memory and deleted at the next successful removal.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from collector.rows import Row, rows_from_json, rows_json
from yujing.model import Reading
from yujing.dedup import ids_from_json, ids_json
from yujing.sqlite import Room, Sync, open_db, reclaim

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS seen_ids (t REAL NOT NULL, ids TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS seen_ids_t ON seen_ids (t);
CREATE TABLE IF NOT EXISTS loss (one INTEGER PRIMARY KEY CHECK (one = 1), dropped INTEGER NOT NULL,
                                 reported INTEGER NOT NULL, reason TEXT NOT NULL);
"""


class SpoolUnwritable(Exception):
    """The spool's file refused a write (disk full, I/O error); nothing was changed."""


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_db(path, _SCHEMA, sync=Sync.NORMAL, what="collector spool")
        self._room = Room(self._db, path)
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'seen'").fetchone():  # a row per id (before)
            self._db.executescript("BEGIN; INSERT INTO seen_ids SELECT t, json_group_array(id) FROM seen GROUP BY t;"
                                   "DROP TABLE seen; COMMIT;")
        self.depth = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM batches").fetchone()[0]
        self._gone: set[int] = set()  # batches removed, but the DELETE could not be written yet
        row = self._db.execute("SELECT dropped, reported, reason FROM loss").fetchone()
        self.dropped, self.reported, self.reason = row if row else (0, 0, "")

    def close(self) -> None:
        self._db.close()

    def put(self, batch: list[Reading] | list[Row], now: float) -> None:
        """Spool a batch (a JSON array of readings) and remember its ids as seen, in one transaction."""
        with self._writing():
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO batches (n, body) VALUES (?, ?)", (len(batch), rows_json(batch)))
            self._db.execute("INSERT INTO seen_ids VALUES (?, ?)", (now, ids_json([r.id for r in batch])))
        self.depth += len(batch)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One transaction; a refused write (SQLite has rolled it back or we do) becomes SpoolUnwritable."""
        try:
            with self._db:
                yield
        except sqlite3.Error as e:
            raise SpoolUnwritable(f"spool {self.path}: {e}") from e
        self._room.check()

    def oldest(self, max_readings: int) -> tuple[list[int], list[Row]]:
        """The oldest spooled batches as rows, up to about ``max_readings`` readings (at least one batch)."""
        seqs: list[int] = []
        out: list[Row] = []
        for seq, n, body in self._db.execute("SELECT seq, n, body FROM batches ORDER BY seq"):
            if seq in self._gone:
                continue
            if seqs and len(out) + n > max_readings:
                break
            seqs.append(seq)
            out.extend(rows_from_json(body))
        return seqs, out

    def remove(self, seqs: list[int]) -> int:
        """Forget replayed batches; returns how many readings they held.

        If the file refuses the DELETE (disk full), they are forgotten in memory only (so never replayed
        twice by this process), the DELETE is retried with the next removal, and SpoolUnwritable is raised.
        """
        if not seqs:
            return 0
        marks = ",".join("?" * len(seqs))
        n = self._db.execute(f"SELECT COALESCE(SUM(n), 0) FROM batches WHERE seq IN ({marks})", seqs).fetchone()[0]
        self.depth -= n
        self._gone.update(seqs)
        self._flush_gone()
        return n

    def _flush_gone(self, drop: tuple[int, str] | None = None) -> None:
        gone = list(self._gone)
        marks = ",".join("?" * len(gone))
        with self._writing():
            self._db.execute("BEGIN")
            self._db.execute(f"DELETE FROM batches WHERE seq IN ({marks})", gone)
            if drop:
                self._db.execute("INSERT INTO loss VALUES (1, ?, 0, ?) ON CONFLICT(one) DO UPDATE SET "
                                 "dropped = dropped + excluded.dropped, reason = excluded.reason", drop)
        self._gone.clear()

    def drop_oldest(self, readings: int, reason: str) -> int:
        """Discard the oldest batches to free about ``readings`` places, counting them as lost for ``reason``
        in the same transaction; returns how many readings were dropped (0 if the file refused the write)."""
        seqs, total = [], 0
        for seq, n in self._db.execute("SELECT seq, n FROM batches ORDER BY seq"):
            if total >= readings:
                break
            if seq not in self._gone:
                seqs.append(seq)
                total += n
        if not seqs:
            return 0
        before = set(self._gone)
        self._gone.update(seqs)
        try:
            self._flush_gone((total, reason))
        except SpoolUnwritable:
            self._gone = before  # nothing dropped: the batches stay, the caller holds its batch instead
            raise
        self.depth -= total
        self.dropped += total
        self.reason = reason
        return total

    def reclaim(self) -> None:
        """After a refused write: give back the WAL's space if there is room for that now."""
        reclaim(self._db)

    def set_reported(self, dropped: int) -> None:
        """The broker has the loss report saying ``dropped``: no need to send it again after a restart."""
        with self._writing():
            self._db.execute("UPDATE loss SET reported = ? WHERE reported < ?", (dropped, dropped))
        self.reported = max(self.reported, dropped)

    def mark_seen(self, ids: list[str], now: float) -> None:
        with self._writing():
            self._db.execute("INSERT INTO seen_ids VALUES (?, ?)", (now, ids_json(ids)))

    def seen_since(self, t: float) -> list[tuple[str, float]]:
        rows = self._db.execute("SELECT t, ids FROM seen_ids WHERE t >= ? ORDER BY t", (t,)).fetchall()
        return [(i, when) for when, ids in rows for i in ids_from_json(ids)]

    def forget_seen_before(self, t: float) -> None:
        with self._writing():
            self._db.execute("DELETE FROM seen_ids WHERE t < ?", (t,))
