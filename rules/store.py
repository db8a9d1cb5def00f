"""Durable rule state: pack state, warning lifecycles, an outbox of unpublished warnings and the ids of
the readings the state covers, in SQLite.

One transaction holds the new state *and* the warnings it produced, so after a crash a warning is
either unissued (its condition is judged again from the persisted state) or waiting in the outbox to
be published: at least once, never lost, and never issued twice with different versions.
"""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from yujing.dedup import ids_from_json, ids_json
from yujing.errors import StoreError
from yujing.model import HazardWarning
from yujing.sqlite import Sync, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS pack_state (pack TEXT NOT NULL, entity TEXT NOT NULL, json TEXT NOT NULL,
                                       PRIMARY KEY (pack, entity));
CREATE TABLE IF NOT EXISTS lifecycle (key TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, warning TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen_batch (seq INTEGER PRIMARY KEY, n INTEGER NOT NULL, ids TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS adopted (file TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS taken_by (layout TEXT PRIMARY KEY);
"""


def dumps(state: Any) -> str:
    """JSON of one entity's state, as ``json.dumps`` writes it, about 7x faster.

    Encoding the rise and smoothing windows of every dirty sensor was a fifth of the rules service's time at
    1,000 readings/s (py-spy, bench/phone.py), and it is done on the event loop (:meth:`StateStore.prepare`).
    orjson writes NaN and infinities as null where json writes NaN/Infinity (which load back as floats): any
    state with a null, or one orjson refuses, is written by json, so what is saved reads back as before.
    """
    try:
        out = orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:  # what orjson refuses (an integer past 64 bits): json as before
        out = b"null"
    if b"null" in out:
        return json.dumps(state, separators=(",", ":"))
    return out.decode()


class Rows(NamedTuple):
    """One save, serialised: pack state, lifecycles, warnings for the outbox, covered reading ids."""

    packs: list[tuple[str, str, str]]
    lifecycles: list[tuple[str, str]]
    warnings: list[tuple[str]]
    seen: list[str]
    keep_seen: int
    dropped: list[tuple[str, str]] = []  # (pack, entity) rows to delete (a pack dumped None for them)


class StateStore:
    """``with StateStore(path) as store:``; the engine reads it once at start and writes dirty state."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # FULL: a warning issued must survive a power cut
        self.db = open_db(self.path, SCHEMA, sync=Sync.FULL, what="rules state", threads=True)
        self._peek: sqlite3.Connection | None = None
        # the reading ids the state covers are saved a save's worth to a row (``seen_batch``: the ids as a JSON
        # array), not a row each: an INSERT and, once 200,000 are kept, a DELETE per reading had been a seventh
        # of the service's CPU. (seq, n) of every row kept, oldest first, to know which rows fall out of the last
        # keep_seen. A file saved before this keeps its old ids in ``seen`` (read first, and moved at the next save).
        self._batches: deque[tuple[int, int]] = deque()
        try:
            self._old_seen = self.db.execute("SELECT COUNT(*) FROM seen").fetchone()[0]
            self._batches.extend(self.db.execute("SELECT seq, n FROM seen_batch ORDER BY seq"))
        except sqlite3.Error as e:
            self.db.close()
            raise StoreError(f"rules state {self.path}: reading: {e}") from e
        self._kept = sum(n for _, n in self._batches)

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()
        if self._peek is not None:
            self._peek.close()

    def pack_states(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for pack, entity, js in self.db.execute("SELECT pack, entity, json FROM pack_state"):
            yield pack, entity, json.loads(js)

    def lifecycles(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key, js in self.db.execute("SELECT key, json FROM lifecycle"):
            yield key, json.loads(js)

    # --- another partition layout's state taken over (rules/partition.py, ``adopt``) ----------------------------
    def rows(self) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]], list[str]]:
        """Everything saved, as saved: pack state (pack, entity, json), lifecycles (key, json), the outbox's warnings."""
        return (self.db.execute("SELECT pack, entity, json FROM pack_state").fetchall(),
                self.db.execute("SELECT key, json FROM lifecycle").fetchall(),
                [w for (w,) in self.db.execute("SELECT warning FROM outbox ORDER BY seq")])

    def adopted(self, file: str) -> bool:
        """Whether this store took its share of ``file`` (another layout's state file) already."""
        return self.db.execute("SELECT 1 FROM adopted WHERE file = ?", (file,)).fetchone() is not None

    def adopt(self, file: str, packs: list[tuple[str, str, str]], lifecycles: list[tuple[str, str]],
              warnings: list[str]) -> None:
        """Take rows of ``file`` in, and remember that it was taken, in one transaction (fsynced)."""
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany("INSERT OR REPLACE INTO pack_state (pack, entity, json) VALUES (?, ?, ?)", packs)
                self.db.executemany("INSERT OR REPLACE INTO lifecycle (key, json) VALUES (?, ?)", lifecycles)
                self.db.executemany("INSERT INTO outbox (warning) VALUES (?)", [(w,) for w in warnings])
                self.db.execute("INSERT INTO adopted (file) VALUES (?)", (file,))
        except sqlite3.Error as e:
            raise StoreError(f"rules state {self.path}: taking over {file}: {e}") from e

    def taken_by(self, layout: str) -> set[str]:
        """Record that partition ``layout`` (``p<i>of<n>``, or ``""``: one process) took its share of this
        store's state; every layout recorded so far."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO taken_by (layout) VALUES (?)", (layout,))
        return {layout for (layout,) in self.db.execute("SELECT layout FROM taken_by")}

    def seen_ids(self, limit: int) -> list[str]:
        """The ids of the last ``limit`` readings the saved state covers, oldest first."""
        out: list[str] = []
        for (ids,) in self.db.execute("SELECT ids FROM seen_batch ORDER BY seq DESC"):
            if len(out) >= limit:
                break
            out = ids_from_json(ids) + out
        if len(out) < limit and self._old_seen:  # saved before the ids were batched: older than every batch
            rows = self.db.execute("SELECT id FROM seen ORDER BY seq DESC LIMIT ?", (limit - len(out),)).fetchall()
            out = [r[0] for r in reversed(rows)] + out
        return out[-limit:] if limit > 0 else []

    def save(self, packs: dict[str, dict[str, Any]], lifecycles: dict[str, dict[str, Any]],
             warnings: list[HazardWarning], seen: Sequence[str] = (), keep_seen: int = 200_000) -> None:
        """Persist changed state and queue ``warnings`` for publication, atomically.

        ``seen``: ids of the readings this state now covers (the last ``keep_seen`` are kept), so a
        reading redelivered after a crash between this commit and its acknowledgement counts once.
        """
        self.write(self.prepare(packs, lifecycles, warnings, seen, keep_seen))

    @staticmethod
    def prepare(packs: dict[str, dict[str, Any]], lifecycles: dict[str, dict[str, Any]],
                warnings: list[HazardWarning], seen: Sequence[str] = (), keep_seen: int = 200_000) -> Rows:
        """What :meth:`save` writes, serialised now: the state as it is at this instant, whatever changes next
        (the service serialises on the event loop and writes in a worker thread, see yujing.sqlite.Writer)."""
        return Rows([(p, e, dumps(s)) for p, ents in packs.items() for e, s in ents.items() if s is not None],
                    [(k, dumps(v)) for k, v in lifecycles.items()],
                    [(w.model_dump_json(),) for w in warnings], list(seen), keep_seen,
                    [(p, e) for p, ents in packs.items() for e, s in ents.items() if s is None])

    def write(self, rows: Rows) -> None:
        """One transaction (with ``synchronous=FULL``: fsynced before it returns)."""
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany("INSERT OR REPLACE INTO pack_state (pack, entity, json) VALUES (?, ?, ?)",
                                    rows.packs)
                if rows.dropped:
                    self.db.executemany("DELETE FROM pack_state WHERE pack = ? AND entity = ?", rows.dropped)
                self.db.executemany("INSERT OR REPLACE INTO lifecycle (key, json) VALUES (?, ?)", rows.lifecycles)
                self.db.executemany("INSERT INTO outbox (warning) VALUES (?)", rows.warnings)
                if rows.seen:
                    forget = self._write_seen(rows.seen, rows.keep_seen)
        except sqlite3.Error as e:
            if rows.seen:  # rolled back: what is kept is as it was (re-read, as the failed write may have moved it)
                self._batches = deque(self.db.execute("SELECT seq, n FROM seen_batch ORDER BY seq"))
                self._kept = sum(n for _, n in self._batches)
            raise StoreError(f"rules state {self.path}: saving: {e}") from e
        if rows.seen:
            for _ in range(forget):
                self._kept -= self._batches.popleft()[1]

    def _write_seen(self, ids: list[str], keep: int) -> int:
        """One row for this save's ids; the oldest rows (and the old per-id table) dropped once the newer ones hold
        ``keep`` ids. Returns how many batches of ``self._batches`` the transaction deleted (popped once it commits)."""
        seq = (self._batches[-1][0] if self._batches else 0) + 1
        self.db.execute("INSERT INTO seen_batch (seq, n, ids) VALUES (?, ?, ?)", (seq, len(ids), ids_json(ids)))
        self._batches.append((seq, len(ids)))
        self._kept += len(ids)
        forget, kept, last = 0, self._kept, None
        for old_seq, n in self._batches:
            if kept - n < keep:
                break
            kept, forget, last = kept - n, forget + 1, old_seq
        if last is not None:
            self.db.execute("DELETE FROM seen_batch WHERE seq <= ?", (last,))
        if self._old_seen and kept >= keep:
            self.db.execute("DELETE FROM seen")
            self._old_seen = 0
        elif self._old_seen:  # the old ids still needed: as many as the batches lack
            self.db.execute("DELETE FROM seen WHERE seq <= (SELECT MAX(seq) FROM seen) - ?", (keep - kept,))
        return forget

    def outbox(self, limit: int = 1000, after: int = 0) -> list[tuple[int, HazardWarning]]:
        return [(seq, HazardWarning.model_validate_json(w)) for seq, w in self.outbox_json(limit, after)]

    def outbox_json(self, limit: int = 1000, after: int = 0) -> list[tuple[int, str]]:
        """The oldest unpublished warnings past ``after``, as they were saved (the bytes that go on the bus)."""
        return self.db.execute("SELECT seq, warning FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                               (after, limit)).fetchall()

    def published(self, seq: int) -> None:
        self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    @property
    def outbox_depth(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def peek_outbox_depth(self) -> int:
        """The outbox's depth through a read-only connection of its own (WAL: it never waits for a writer),
        for a caller on another thread than the one that writes (a health check on the event loop)."""
        if self._peek is None:
            self._peek = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
        return self._peek.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
