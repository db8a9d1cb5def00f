"""Group commit: the writes of many coroutines in one transaction per turn of the event loop.

In a fan-out each worker claims its notification ('sending') before its request and records the sid after,
while the provider's receipts come back on the webhooks: committed one by one, that was a commit per step, a
quarter of the alerts' CPU (py-spy over ``bench/alerts.py``). Here a write is queued, the first write of a turn
schedules one flush for the next turn (after every coroutine woken in this one has queued its own), and each
writer resumes only once the transaction holding its write has committed: a claim is still durable before its
request is made, a receipt before its callback is answered, so a crash never sends twice.

A write is statements on this log and nothing else, since it may run twice: if one write of a turn raises, the
whole transaction is rolled back and each write of the turn runs again in a transaction of its own, so the
error is its writer's alone and the others commit. If the commit fails (disk full, locked), they are tried
one by one the same way, and each writer gets its own outcome.
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
        batch = [(write, done) for write, done in self._pending if not done.cancelled()]  # a writer that stopped
        self._pending = []                                                # waiting is not written behind its back
        try:
            with self.db.transaction():
                results = [write() for write, _ in batch]
        except sqlite3.Error as exc:
            if len(batch) > 1:
                self._one_by_one(batch)
            else:
                batch[0][1].set_exception(exc)
            return
        except Exception:  # a writer's bug: all was rolled back; now each alone, so the error is its own
            self._one_by_one(batch)
            return
        self.commits += 1
        for (_, done), result in zip(batch, results, strict=True):
            done.set_result(result)

    def _one_by_one(self, batch: list[tuple[Callable[[], Any], asyncio.Future]]) -> None:
        for write, done in batch:
            try:
                with self.db.transaction():
                    result = write()
            except Exception as exc:  # noqa: BLE001  handed to its writer
                done.set_exception(exc)
                continue
            self.commits += 1
            done.set_result(result)
