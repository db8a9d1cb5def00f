"""Opening a durable SQLite file, one way for every part: WAL, a stated fsync policy, one error type.

    db = open_db(path, SCHEMA, sync=Sync.FULL, what="rules state")

Autocommit mode (``isolation_level=None``): a part that needs a transaction says ``BEGIN`` itself, so what
is atomic is visible in its code. A file that cannot be opened, created or given its schema raises
:class:`yujing.errors.StoreError` naming the part and the file.
"""

from __future__ import annotations

import enum
import sqlite3
from pathlib import Path

from yujing.errors import StoreError


class Sync(enum.StrEnum):
    """SQLite's ``synchronous`` in WAL mode: what a commit survives."""

    NORMAL = "NORMAL"  # a process crash (SIGKILL): the WAL is in the OS; a power cut may lose the last commits
    FULL = "FULL"  # a power cut too: every commit is fsynced (a warning issued, a gateway's outbox)


def open_db(path: Path, schema: str, *, sync: Sync, what: str, threads: bool = False) -> sqlite3.Connection:
    """The database at ``path`` (its directory created), in WAL mode, with ``schema`` applied.

    ``threads``: the connection is also used from worker threads (one at a time, under the caller's lock).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=not threads)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={sync.value}")
        db.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"{what} {path}: {exc}") from exc
    return db
