"""Opening a durable SQLite file, one way for every part: WAL, a stated fsync policy, one error type.

    db = open_db(path, SCHEMA, sync=Sync.FULL, what="rules state")

Autocommit mode (``isolation_level=None``): a part that needs a transaction says ``BEGIN`` itself, so what
is atomic is visible in its code. A file that cannot be opened, created or given its schema raises
:class:`yujing.errors.StoreError` naming the part and the file.
"""

from __future__ import annotations

import asyncio
import enum
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from yujing.errors import StoreError

T = TypeVar("T")


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


def remove_db(path: Path) -> None:
    """Delete a (closed) WAL database: its file and the WAL and shared-memory files beside it."""
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        part.unlink(missing_ok=True)


def reclaim(db: sqlite3.Connection) -> None:
    """After a refused write: fold the WAL into the database and truncate it, if there is room for that now.

    Without it the WAL, checkpointed only at 1000 pages, would keep the space it took while the disk filled.
    """
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass


class Room:
    """Keeps a WAL database able to recover from a full disk: call :meth:`check` after each commit.

    A checkpoint copies the WAL's pages into the database file, which must grow by the new ones; only then
    can the WAL be emptied. SQLite checkpoints at 1000 pages, so on a disk that fills while the WAL holds,
    say, 700 kB of new pages, an operator who frees 300 kB has freed too little: the checkpoint grows the
    file into the freed room, fails, and every later write fails with it, for good (a 1 MB spool that never
    became writable again when its batches were large). Checkpointing whenever the WAL reaches half the free
    space keeps what a checkpoint needs below what the disk has left; on a roomy disk it never fires.
    """

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db, self._wal, self._dir = db, f"{path}-wal", str(path.parent)

    def check(self) -> None:
        try:
            wal = os.stat(self._wal).st_size
            fs = os.statvfs(self._dir)
        except OSError:
            return
        if wal and 2 * wal >= fs.f_bavail * fs.f_frsize:
            reclaim(self._db)


class Writer:
    """One worker thread that runs a database's statements in the order they were handed over, so a commit's
    fsync (``Sync.FULL``: milliseconds, far more on a busy disk) never stalls the event loop.

        writer = Writer("rules-state")
        done = writer.submit(store.write, rows)     # on the loop: ordered after everything submitted before
        await writer.wait(done)                     # ... and acknowledge what it made durable
        writer.run_now(store.write, rows)           # at shutdown: blocks, still in order

    Open the connection with ``open_db(..., threads=True)`` and use it only through the writer afterwards.
    """

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        return self._pool.submit(fn, *args)

    @staticmethod
    async def wait(done: Future[T]) -> T:
        return await asyncio.wrap_future(done)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._pool.submit(fn, *args))

    def run_now(self, fn: Callable[..., T], *args: Any) -> T:
        return self._pool.submit(fn, *args).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
