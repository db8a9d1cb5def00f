"""The de-duplication window's table: exact against a plain model through growth and forgetting, and small."""

from __future__ import annotations

import random
import tracemalloc
from collections import OrderedDict
from types import SimpleNamespace

from yujing import dedup
from yujing.dedup import Dedup, digest


class Model:
    """What Dedup promises, the obvious way: ids in arrival order with their time."""

    def __init__(self, window_s: float, max_ids: int) -> None:
        self.window_s, self.max_ids, self.seen = window_s, max_ids, OrderedDict()

    def fresh(self, ids: list[str], now: float) -> list[str]:
        out = []
        for i in ids:
            if i not in self.seen:
                self.seen[i] = now
                out.append(i)
        while self.seen and (len(self.seen) > self.max_ids or next(iter(self.seen.values())) < now - self.window_s):
            self.seen.popitem(last=False)
        return out


def test_the_window_answers_like_a_plain_ordered_map_through_growth_collisions_and_forgetting(monkeypatch):
    # ids home in one slot of every 16 (bits 4-7 set), the last of them the top slots: probe runs that collide,
    # shift on every deletion and wrap round to the start
    monkeypatch.setattr(dedup, "_hash", lambda rid: hash(rid) | 0xF0)
    rng = random.Random(18)
    d, model = Dedup(window_s=300, max_ids=3_000), Model(window_s=300, max_ids=3_000)
    now, grew = 0.0, False
    for step in range(4_000):
        now += rng.choice((0.0, 0.0, 0.1, 1.0)) if step % 1_000 else 400.0  # now and then all grow old at once
        ids = [f"r{rng.randrange(6_000)}" for _ in range(rng.choice((1, 1, 3, 50)))]
        rows = [SimpleNamespace(id=i) for i in ids]
        assert [r.id for r in d.fresh(rows, now)] == model.fresh(ids, now), f"step {step}"
        assert len(d) == len(model.seen)
        grew = grew or len(d._table) > 4_096
    assert grew and len(d) == 3_000  # the table grew on the way, and the count bound is what holds now
    assert sorted(x for x in d._table if x) == sorted(dedup.digest(i) for i in model.seen)


def test_the_window_remembers_a_digest_of_each_id_not_the_id():
    d = Dedup(window_s=10, max_ids=10)
    d.fresh([SimpleNamespace(id="x" * 128)], 0)
    assert [x for x in d._table if x] == [digest("x" * 128)] and 0 < digest("x" * 128) < 2**64
    assert digest("x") != digest("x" * 128)


def test_the_window_costs_under_40_bytes_an_id():  # the set of digest ints and deque it replaced: ~100
    n = 100_000
    rows = [SimpleNamespace(id=f"gw-07-rain-{i:09d}") for i in range(n)]
    tracemalloc.start()
    try:
        d = Dedup(window_s=3600, max_ids=2_000_000)
        for k in range(0, n, 50):
            d.fresh(rows[k:k + 50], float(k // 2_000))
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(d) == n
    assert held / n < 40, f"{held / n:.1f} bytes an id"
