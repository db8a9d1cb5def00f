"""Reading ids seen recently, bounded by a time window and a count: one de-duplicator for every stage.

The collector keeps ``dedup_window_s`` of ids (its spool persists them); the rules service keeps the last
200,000 by count alone (``window_s=math.inf``; its state store persists them). Either way a reading the
broker redelivers after a crash, or the edge re-sends after a reconnect, counts once.
"""

from __future__ import annotations

from collections import deque
from typing import TypeVar

T = TypeVar("T")

_M64, _M26 = (1 << 64) - 1, (1 << 26) - 1


def digest(rid: str) -> int:
    """A reading id as a 90-bit number: two keyed hashes (CPython's SipHash, random key per process).

    An int under 2**90 is 36 bytes; the ids it stands for are 60-90 bytes as strings. 90 bits make a false
    "seen before" (which would drop a reading) negligible: with 2,000,000 ids remembered, 1.6e-21 per reading.
    Digests are never stored: the spool and the rules' state keep the ids, and a restart digests them anew.
    """
    return (hash(rid) & _M64) << 26 | (hash(rid + "\x1f") & _M26)


class Dedup:
    """Reading ids seen within a time window (bounded: ``window_s`` and ``max_ids``), oldest evicted first.

    A set of id digests (:func:`digest`) for lookups and the digests in arrival order, with one (time, count)
    mark per batch for ageing: ~90 bytes per id (the set's table half of it), against ~117 for the ids
    themselves in a set and a deque, and ~190 for an OrderedDict of id -> time. On a busy collector the
    window is most of the heap (the peer harness: 310,000 ids).
    """

    def __init__(self, window_s: float, max_ids: int) -> None:
        self.window_s = window_s
        self.max_ids = max_ids
        self._set: set[int] = set()
        self._order: deque[int] = deque()
        self._marks: deque[list] = deque()  # [time, ids still in _order from that time], oldest first

    def _add(self, d: int, now: float) -> None:
        self._set.add(d)
        self._order.append(d)
        if self._marks and self._marks[-1][0] == now:
            self._marks[-1][1] += 1
        else:
            self._marks.append([now, 1])

    def load(self, rows: list[tuple[str, float]]) -> None:
        for i, t in rows:
            d = digest(i)
            if d not in self._set:
                self._add(d, t)
        self._trim(rows[-1][1] if rows else 0.0)

    def __len__(self) -> int:
        return len(self._set)

    def fresh(self, readings: list[T], now: float) -> list[T]:
        """The readings (rows or ``Reading`` objects) not seen before; remembers them."""
        seen = self._set
        rows = type(readings[0]) is dict if readings else True
        if len(readings) == 1:  # one reading per message: the common case of single-reading uplinks
            r = readings[0]
            d = digest(r["id"] if rows else r.id)  # type: ignore[index,attr-defined]
            if d in seen:
                return []
            self._add(d, now)
            out = readings
        else:
            ds = ([digest(r["id"]) for r in readings] if rows  # type: ignore[index]
                  else [digest(r.id) for r in readings])  # type: ignore[attr-defined]
            if seen.isdisjoint(ds) and len(set(ds)) == len(ds):  # the usual case: set operations, not a loop
                out = list(readings)
                seen.update(ds)
                self._order.extend(ds)
                if self._marks and self._marks[-1][0] == now:
                    self._marks[-1][1] += len(ds)
                elif ds:
                    self._marks.append([now, len(ds)])
            else:  # some seen before, or one id twice in this message
                out = []
                for r, d in zip(readings, ds):
                    if d in seen:
                        continue
                    self._add(d, now)
                    out.append(r)
        if len(seen) > self.max_ids or (self._marks and self._marks[0][0] < now - self.window_s):  # age, too
            self._trim(now)
        return out

    def _trim(self, now: float) -> None:
        horizon, marks = now - self.window_s, self._marks
        while marks and (len(self._set) > self.max_ids or marks[0][0] < horizon):
            self._set.discard(self._order.popleft())
            marks[0][1] -= 1
            if not marks[0][1]:
                marks.popleft()

    def expire(self, now: float) -> None:
        self._trim(now)
