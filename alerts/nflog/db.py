"""The log's one SQLite file, shared by its parts: opened once (WAL, its kind checked), one transaction at a time."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from yujing.errors import StoreError
from yujing.sqlite import Sync, open_db

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
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
