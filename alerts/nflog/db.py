"""The log's one SQLite file, shared by its parts: opened once (WAL, its kind checked), one transaction at a time."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from yujing.errors import StoreError
from yujing.sqlite import Sync, Writer, open_db

META = "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);"


class LogDb:
    """The connection the parts share. Autocommit: each statement commits by itself, unless inside
    :meth:`transaction`."""

    def __init__(self, path: Path, drill: bool, schemas: list[str]) -> None:
        self.path = path
        # NORMAL: durable across a process crash (the WAL is in the OS); see the README on power loss.
        # threads: as the log always was (check_same_thread off): a reader in a worker thread is allowed
        self.conn = open_db(path, META + "".join(schemas), sync=Sync.NORMAL, what="notification log", threads=True)
        kind = "drill" if drill else "real"
        try:
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('kind', ?)", (kind,))
            (stored,) = self.conn.execute("SELECT v FROM meta WHERE k='kind'").fetchone()
        except sqlite3.Error as exc:
            self.conn.close()
            raise StoreError(f"notification log {path}: {exc}") from exc
        if stored != kind:
            self.conn.close()
            raise StoreError(f"notification log {path} holds {stored} warnings; refusing to open it for {kind}")
        # With synchronous=NORMAL a commit does not fsync: a checkpoint does (the WAL, then the database file).
        # SQLite runs one in whichever commit fills the WAL past 1000 pages, here on the event loop; so this
        # connection never does, and the Checkpointer below does them in a thread of its own.
        self.conn.execute("PRAGMA wal_autocheckpoint=0")
        self._appends: dict[str, list[tuple]] = {}  # rows for append-only tables, written at the commit

    def append(self, sql: str, row: tuple) -> None:
        """An INSERT into an append-only table that nothing in this transaction reads back (the timeline): inside
        a transaction it is written with the others of its statement by one ``executemany`` just before the
        commit (a fan-out adds three events per SMS); outside one, at once."""
        if not self.conn.in_transaction:
            self.conn.execute(sql, row)
            return
        rows = self._appends.get(sql)
        if rows is None:
            self._appends[sql] = [row]
        else:
            rows.append(row)

    def flush_appends(self) -> None:
        """Write the rows :meth:`append` holds (before a read of their table, and at each commit)."""
        if not self._appends:
            return
        appends, self._appends = self._appends, {}
        for sql, rows in appends.items():
            self.conn.executemany(sql, rows)

    def execute(self, sql: str, args: tuple | list = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, args)

    def executemany(self, sql: str, rows: list[tuple]) -> sqlite3.Cursor:
        return self.conn.executemany(sql, rows)

    def columns(self, table: str) -> set[str]:
        return {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all; inside another transaction it joins that one.

        For steps whose parts must not be split by a crash: an escalation step is closed, the next one
        scheduled and its notifications queued in one transaction, or the step is still due after a restart.
        """
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
            self.flush_appends()
        except BaseException:
            self._appends = {}
            self.conn.rollback()
            raise
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()  # the last connection to close checkpoints what is left, and removes the WAL


class Checkpointer:
    """Copies a log's WAL into its database file, with the fsyncs that takes, on a connection and a thread of its
    own (a :class:`yujing.sqlite.Writer`): nothing on the event loop waits for the disk. What a commit made
    durable does not change: a commit is in the WAL, in the OS, before the request it guards is sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: Writer | None = None
        self._conn: sqlite3.Connection | None = None

    async def run(self) -> None:
        if self._writer is None:
            self._writer = Writer(f"nflog-checkpoint-{self.path.stem}")
        await self._writer.run(self._checkpoint)

    def _checkpoint(self) -> None:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5)
        # PASSIVE: as much as no reader or writer is waiting on; the log's own writes go on meanwhile
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def close(self) -> None:
        if self._writer is None:
            return
        if self._conn is not None:
            self._writer.run_now(self._conn.close)
        self._writer.close()
        self._writer = None
