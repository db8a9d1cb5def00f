"""Group commit: the writes of many coroutines in one transaction per turn of the event loop.

In a fan-out each worker claims its notification ('sending') before its request and records the sid after,
while the provider's receipts come back on the webhooks: committed one by one, that was a commit per step, a
quarter of the alerts' CPU (py-spy over ``bench/alerts.py``). Here a write is queued, the first write of a turn
schedules one flush for the next turn (after every coroutine woken in this one has queued its own), and each
writer resumes only once the transaction holding its write has committed: a claim is still durable before its
request is made, a receipt before its callback is answered, so a crash never sends twice.

Two kinds of write:

- ``run(write)``: a closure of statements on this log.
- ``many(write_all, item)``: one item of a write that takes a list (``write_all(items) -> results``, one result
  per item, in order). The items of one turn given the same ``write_all`` are written together, in one call, at
  the place of the first of them: one ``UPDATE … WHERE key IN (…)`` for a turn's claims, one ``executemany`` for
  its sids, instead of a statement each (about nine statements per SMS were a quarter of the alerts' CPU). So an
  item must not depend on the other writes of its turn (a claim on a key's status, a sid on its key: each
  settled by an earlier commit).

A write is statements on this log and nothing else, since it may run twice: if one write of a turn raises, the
whole transaction is rolled back and each write of the turn runs again in a transaction of its own (a batch item
by item), so the error is its writer's alone and the others commit. If the commit fails (disk full, locked),
they are tried one by one the same way, and each writer gets its own outcome.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from alerts.nflog.db import LogDb

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741  an item of a batched write


class _Batch:
    """The items of one turn for one ``write_all``, and their writers' futures."""

    __slots__ = ("write_all", "items", "futures")

    def __init__(self, write_all: Callable[[list[Any]], list[Any]]) -> None:
        self.write_all = write_all
        self.items: list[Any] = []
        self.futures: list[asyncio.Future] = []

    def live(self) -> _Batch | None:
        """Without the writers that stopped waiting (they are not written behind their backs); None if none is left."""
        if not any(f.cancelled() for f in self.futures):
            return self
        kept = _Batch(self.write_all)
        for item, f in zip(self.items, self.futures, strict=True):
            if not f.cancelled():
                kept.items.append(item)
                kept.futures.append(f)
        return kept if kept.items else None


class _One:
    """A ``run`` write: a closure and its writer's future."""

    __slots__ = ("write", "futures")

    def __init__(self, write: Callable[[], Any], future: asyncio.Future) -> None:
        self.write = write
        self.futures = [future]

    def live(self) -> _One | None:
        return None if self.futures[0].cancelled() else self


class GroupCommit:
    def __init__(self, db: LogDb) -> None:
        self.db = db
        self._pending: list[_One | _Batch] = []
        self._batches: dict[Hashable, _Batch] = {}  # this turn's, by write_all
        self.commits = 0  # transactions committed (tests and benches: how well writes were grouped)

    async def run(self, write: Callable[[], T]) -> T:
        """Run ``write()`` (synchronous statements on this log) in the next group transaction; return its result
        once that transaction has committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(_One(write, done))
        return await done

    async def many(self, write_all: Callable[[list[I]], list[T]], item: I) -> T:
        """Write ``item`` with the turn's other items of ``write_all`` (one call for them all, in the next group
        transaction); return its result once that transaction has committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        batch = self._batches.get(write_all)
        if batch is None:
            batch = self._batches[write_all] = _Batch(write_all)
            self._pending.append(batch)
        batch.items.append(item)
        batch.futures.append(done)
        return await done

    def _flush(self) -> None:
        if self.db.conn.in_transaction:  # someone's transaction is open across an await: theirs commits first
            asyncio.get_running_loop().call_soon(self._flush)
            return
        writes = [w for w in (entry.live() for entry in self._pending) if w is not None]
        self._pending, self._batches = [], {}
        if not writes:
            return
        try:
            with self.db.transaction():
                results = [_results(w) for w in writes]
        except Exception as exc:  # noqa: BLE001  all was rolled back: now each alone, so an error is its own
            if len(writes) == 1 and len(writes[0].futures) == 1 and isinstance(exc, sqlite3.Error):
                writes[0].futures[0].set_exception(exc)  # alone already: the log refused it (disk full, locked)
                return
            self._one_by_one(writes)
            return
        self.commits += 1
        for w, got in zip(writes, results, strict=True):
            for done, result in zip(w.futures, got, strict=True):
                done.set_result(result)

    def _one_by_one(self, writes: list[_One | _Batch]) -> None:
        for w in writes:
            singles = [_One(w.write, w.futures[0])] if isinstance(w, _One) else [
                _One(_item_of(w.write_all, item), f) for item, f in zip(w.items, w.futures, strict=True)]
            for one in singles:
                try:
                    with self.db.transaction():
                        result = one.write()
                except Exception as exc:  # noqa: BLE001  handed to its writer
                    one.futures[0].set_exception(exc)
                    continue
                self.commits += 1
                one.futures[0].set_result(result)


def _results(w: _One | _Batch) -> list[Any]:
    if isinstance(w, _One):
        return [w.write()]
    got = w.write_all(w.items)
    if len(got) != len(w.items):
        raise RuntimeError(f"{w.write_all!r} returned {len(got)} results for {len(w.items)} items")
    return got


def _item_of(write_all: Callable[[list[Any]], list[Any]], item: Any) -> Callable[[], Any]:
    return lambda: write_all([item])[0]
