"""Reading ids seen recently, bounded by a time window and a count: one de-duplicator for every stage.

The collector keeps ``dedup_window_s`` of ids (its spool persists them); the rules service keeps the last
200,000 by count alone (``window_s=math.inf``; its state store persists them). Either way a reading the
broker redelivers after a crash, or the edge re-sends after a reconnect, counts once.
"""

from __future__ import annotations

import json
from array import array
from collections import deque
from typing import TypeVar

import orjson

T = TypeVar("T")

_M64 = (1 << 64) - 1
_MIN_SLOTS = 1 << 12
_LOAD = 0.7  # linear probing: ~6 probes for a new id at this load, ~1.5 on average over a doubling
_QUICK = 1 << 18  # the table grows 4x up to 256k slots (2 MiB, 183,000 ids), then 2x
_COMPACT = 1 << 16  # drop forgotten ids from the front of the arrival order once this many have gone


def digest(rid: str) -> int:
    """A reading id as a non-zero 64-bit number: CPython's SipHash of it (random key per process).

    8 bytes in an array, where the id is 60-90 bytes as a string. A false "seen before" (which would drop a
    reading) needs another remembered id with the same 64 bits: n / 2**64 per reading, 1.1e-13 with the
    default 2,000,000 ids remembered — at 1,000 readings/s and a full window, once in ~290 years.
    Digests are never stored: the spool and the rules' state keep the ids, and a restart digests them anew.
    """
    return (_hash(rid) & _M64) or 1


_hash = hash  # the tests replace it to force collisions


def ids_json(ids: list[str]) -> str:
    """Reading ids as the collector's spool and the rules' state keep them: a JSON array (orjson: a stored batch's
    ids each time, ~6x json.dumps' speed)."""
    try:
        return orjson.dumps(ids).decode()
    except orjson.JSONEncodeError:  # a lone surrogate in an id (valid JSON escaped, not UTF-8): json escapes it
        return json.dumps(ids)


def ids_from_json(text: str) -> list[str]:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class Dedup:
    """Reading ids seen within a time window (bounded: ``window_s`` and ``max_ids``), oldest evicted first.

    The digests (:func:`digest`) live in two flat arrays of 64-bit numbers, not in Python objects: an
    open-addressing table (linear probing, 0 = empty, at most 70 % full, doubled when fuller) for lookups,
    and the digests in arrival order for forgetting the oldest first, with one (time, count) mark per batch
    for ageing. 8 bytes per id in order plus 11-23 in the table, against 86-100 for the set of digest ints
    and the deque before (330,000 ids: 33.5 MiB then, 6.4 MiB now). On a busy collector the window was most of
    the heap (the peer harness remembers ~310,000 ids).
    """

    def __init__(self, window_s: float, max_ids: int) -> None:
        self.window_s = window_s
        self.max_ids = max_ids
        self._table = array("Q", bytes(8 * _MIN_SLOTS))
        self._mask = _MIN_SLOTS - 1
        self._room = int(_MIN_SLOTS * _LOAD)  # ids the table takes before it doubles
        self._n = 0
        self._order = array("Q")  # digests in arrival order; the live ones from _head on
        self._head = 0
        self._marks: deque[list] = deque()  # [time, ids still in _order from that time], oldest first

    def __len__(self) -> int:
        return self._n

    def _add(self, d: int) -> bool:
        """Remember a digest; False if it was there already."""
        t, mask = self._table, self._mask
        i = d & mask
        while True:
            x = t[i]
            if x == d:
                return False
            if not x:
                break
            i = (i + 1) & mask
        t[i] = d
        self._order.append(d)
        self._n += 1
        if self._n > self._room:
            self._grow()
        return True

    def _mark(self, now: float, n: int) -> None:
        if self._marks and self._marks[-1][0] == now:
            self._marks[-1][1] += n
        elif n:
            self._marks.append([now, n])

    def load(self, rows: list[tuple[str, float]]) -> None:
        for i, t in rows:
            if self._add(digest(i)):
                self._mark(t, 1)
        self._trim(rows[-1][1] if rows else 0.0)

    def fresh(self, readings: list[T], now: float) -> list[T]:
        """The readings (rows or ``Reading`` objects: anything with an ``id``) not seen before; remembers them."""
        # _add(digest(r.id)) for each, inlined: the two calls were half the cost of a new id
        t, mask, order, m64, h = self._table, self._mask, self._order, _M64, _hash
        out = []
        for r in readings:
            d = (h(r.id) & m64) or 1  # type: ignore[attr-defined]
            i = d & mask
            while True:
                x = t[i]
                if x == d:
                    break
                if not x:
                    t[i] = d
                    order.append(d)
                    out.append(r)
                    self._n += 1
                    if self._n > self._room:
                        self._grow()
                        t, mask = self._table, self._mask
                    break
                i = (i + 1) & mask
        self._mark(now, len(out))
        if self._n > self.max_ids or (self._marks and self._marks[0][0] < now - self.window_s):  # age, too
            self._trim(now)
        return out

    def expire(self, now: float) -> None:
        self._trim(now)

    def _trim(self, now: float) -> None:
        horizon, marks, order = now - self.window_s, self._marks, self._order
        while marks and (self._n > self.max_ids or marks[0][0] < horizon):
            self._remove(order[self._head])
            self._head += 1
            marks[0][1] -= 1
            if not marks[0][1]:
                marks.popleft()
        if self._head >= _COMPACT and self._head * 2 >= len(order):
            del order[:self._head]  # one memmove, once per _COMPACT forgotten ids at least
            self._head = 0

    def _remove(self, d: int) -> None:
        """Forget a digest: backward-shift deletion, so lookups never need tombstones."""
        t, mask = self._table, self._mask
        i = d & mask
        while True:
            x = t[i]
            if x == d:
                break
            if not x:
                return  # not there (cannot happen: every digest in _order is in the table)
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            x = t[j]
            if not x:
                break
            home = x & mask
            # x may fill the hole at i unless its home slot lies cyclically in (i, j]
            if (home <= i or home > j) if i < j else (j < home <= i):
                t[i] = x
                i = j
        t[i] = 0
        self._n -= 1

    def _grow(self) -> None:
        # 4x while under _QUICK slots: a cold start on a backlog re-inserts a third as often (each id ~0.25 us)
        slots = len(self._table) * (4 if len(self._table) < _QUICK else 2)
        t, mask = array("Q", bytes(8 * slots)), slots - 1
        with memoryview(self._order) as live:  # no copy of the order
            for d in live[self._head:]:
                i = d & mask
                while t[i]:
                    i = (i + 1) & mask
                t[i] = d
        self._table, self._mask, self._room = t, mask, int(slots * _LOAD)
