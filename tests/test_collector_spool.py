"""The spool's memory of seen reading ids: one row per batch, restart-proof, and read from older files too."""

from __future__ import annotations

from types import SimpleNamespace

import sqlite3

import yujing.config  # noqa: F401  first: collector.config is imported through it
from collector.spool import Spool
from testing.collector import readings


def test_seen_ids_survive_a_reopen_and_are_forgotten_by_age(tmp_path):
    path = tmp_path / "collector.spool"
    spool = Spool(path)
    spool.mark_seen(["a", "b"], 100.0)
    spool.put(readings(2, site="S"), 200.0)  # spooled readings count as seen too
    spool.close()
    spool = Spool(path)
    assert spool.seen_since(0) == [("a", 100.0), ("b", 100.0), ("S-0", 200.0), ("S-1", 200.0)]
    spool.forget_seen_before(150.0)
    assert spool.seen_since(0) == [("S-0", 200.0), ("S-1", 200.0)]
    assert spool.depth == 2
    spool.close()


def test_an_id_that_is_not_utf8_is_remembered_too(tmp_path):
    """Ids are kept as the rules' state keeps them (yujing.dedup.ids_json): a lone surrogate, which no UTF-8
    encoder takes, is written escaped rather than failing the batch's write."""
    spool = Spool(tmp_path / "collector.spool")
    spool.mark_seen(["c1", "c\ud800"], 100.0)
    assert spool.seen_since(0) == [("c1", 100.0), ("c\ud800", 100.0)]
    spool.close()


def test_a_spool_written_with_a_row_per_id_is_read_and_converted(tmp_path):
    path = tmp_path / "collector.spool"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE seen (id TEXT PRIMARY KEY, t REAL NOT NULL) WITHOUT ROWID;"
                     "INSERT INTO seen VALUES ('x', 10.0), ('y', 10.0), ('z', 20.0);")
    db.commit()
    db.close()
    spool = Spool(path)
    assert sorted(spool.seen_since(0)) == [("x", 10.0), ("y", 10.0), ("z", 20.0)]
    assert spool._db.execute("SELECT name FROM sqlite_master WHERE name = 'seen'").fetchone() is None
    spool.close()


def test_dedup_forgets_by_age_and_by_count_oldest_first():
    from yujing.dedup import Dedup

    d = Dedup(window_s=10, max_ids=5)
    ids = lambda rs: [r.id for r in rs]  # noqa: E731
    r = {k: readings(1, site=k)[0] for k in "abcdefgh"}
    assert ids(d.fresh([r["a"], r["b"], r["a"]], 0)) == ["a-0", "b-0"]
    assert ids(d.fresh([r["a"], r["c"]], 5)) == ["c-0"]
    d.expire(10.5)  # a and b (seen at 0) are older than the window now
    assert len(d) == 1 and ids(d.fresh([r["a"]], 11)) == ["a-0"]
    d.fresh([r[k] for k in "defgh"], 12)  # 7 ids > max 5: the two oldest (c, then a) go
    assert len(d) == 5 and ids(d.fresh([r["c"]], 12)) == ["c-0"]


def test_dedup_of_rows_takes_whole_new_messages_at_once_and_still_forgets_oldest_first():
    from yujing.dedup import Dedup

    d = Dedup(window_s=10, max_ids=4)
    row = lambda i: SimpleNamespace(id=i)  # noqa: E731  (Dedup reads only the id)
    assert [r.id for r in d.fresh([row("a"), row("b"), row("c")], 0)] == ["a", "b", "c"]
    assert [r.id for r in d.fresh([row("d"), row("d"), row("b")], 1)] == ["d"]  # twice in one, one seen
    assert [r.id for r in d.fresh([row("e"), row("f")], 2)] == ["e", "f"]  # 6 > 4: a and b go
    assert len(d) == 4 and [r.id for r in d.fresh([row("a"), row("c")], 3)] == ["a"]
    d.expire(12.5)  # all but those of t=3 (a) are older than the window
    assert len(d) == 1 and d.fresh([row("a")], 13) == []


def test_dedup_forgets_ids_older_than_the_window_as_new_ones_arrive_without_being_asked():
    from yujing.dedup import Dedup

    d = Dedup(window_s=10, max_ids=1_000)
    row = lambda i: SimpleNamespace(id=i)  # noqa: E731
    d.fresh([row("a"), row("b")], 0)
    d.fresh([row("c")], 5)
    assert len(d) == 3
    d.fresh([row("d")], 10.5)  # a and b are older than 10 s now; nobody called expire()
    assert len(d) == 2 and [r.id for r in d.fresh([row("a"), row("c")], 11)] == ["a"]
