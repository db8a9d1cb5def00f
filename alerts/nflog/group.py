"""Group commit: the writes of many coroutines in one transaction per turn of the event loop.

In a fan-out each worker claims its notification ('sending') before its request and records the sid after,
while the provider's receipts come back on the webhooks: committed one by one, that was a commit per step, a
quarter of the alerts' CPU (py-spy over ``bench/alerts.py``). Here a write is queued, the first write of a turn
schedules one flush for the next turn (after every coroutine woken in this one has queued its own), and each
writer resumes only once the transaction holding its write has committed: a claim is still durable before its
request is made, a receipt before its callback is answered, so a crash never sends twice.

Each write runs in a savepoint: one that raises is rolled back alone and its writer gets the exception; the
others commit. If the commit itself fails (disk full, locked), every writer of the turn gets that error.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from alerts.nflog.db import LogDb

T = TypeVar("T")


class GroupCommit:
    def __init__(self, db: LogDb) -> None:
        self.db = db
        self._pending: list[tuple[Callable[[], Any], asyncio.Future]] = []
        self.commits = 0  # transactions committed (tests and benches: how well writes were grouped)

    async def run(self, write: Callable[[], T]) -> T:
        """Run ``write()`` (synchronous statements on this log) in the next group transaction; return its result
        once that transaction has committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((write, done))
        return await done

    def _flush(self) -> None:
        if self.db.conn.in_transaction:  # someone's transaction is open across an await: theirs commits first
            asyncio.get_running_loop().call_soon(self._flush)
            return
        batch, self._pending = self._pending, []
        ok: list[tuple[asyncio.Future, Any]] = []
        try:
            with self.db.transaction():
                for write, done in batch:
                    if done.cancelled():  # its writer stopped waiting: it must not be written behind its back
                        continue
                    self.db.execute("SAVEPOINT w")
                    try:
                        result = write()
                    except Exception as exc:  # noqa: BLE001  this writer's error, not the others'
                        self.db.execute("ROLLBACK TO w")
                        self.db.execute("RELEASE w")
                        done.set_exception(exc)
                        continue
                    self.db.execute("RELEASE w")
                    ok.append((done, result))
        except sqlite3.Error as exc:  # the commit (or a savepoint) failed: nothing of this turn is durable
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        self.commits += 1
        for done, result in ok:
            done.set_result(result)
