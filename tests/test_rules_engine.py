"""The engine's state survives a restart: no re-fire, no forgotten warning, versions continue."""

from __future__ import annotations

import sqlite3

from rules.engine import Engine
from rules.store import StateStore
from testing.rules import at, deployment, reading, site
from yujing.model import Level, Q, WarningState


def cfg():
    return deployment([site("RG-1", "rain", torrent={"prepare": {1: 30}, "evacuate": {1: 60}}),
                       site("HP-1", "landslide", landslide={"reference_mm_per_day": 2.0})])


def rain(mm: float, minutes: float):
    return reading("RG-1", "rg-1", Q.RAIN_MM, mm, at(minutes=minutes))


def run(eng: Engine, rs) -> list:
    out = []
    for r in rs:
        ws = eng.feed(r)
        eng.commit(ws)
        out += ws
    return out


def test_restart_in_the_middle_of_a_firing_warning_neither_refires_nor_forgets(tmp_path):
    path = tmp_path / "rules.state.sqlite"
    with StateStore(path) as store:
        eng = Engine(cfg(), store)
        first = run(eng, [rain(10.0, 10 * i) for i in range(1, 6)])  # 50 mm in 50 min: orange + torrent
        assert {(w.key, w.level) for w in first} >= {("rainstorm:RG-1", Level.ORANGE), ("torrent:RG-1", Level.ORANGE)}
    with StateStore(path) as store:  # a new process
        eng = Engine(cfg(), store)
        assert eng.active("rainstorm:RG-1") == Level.ORANGE and eng.active("torrent:RG-1") == Level.ORANGE
        more = run(eng, [rain(0.5, 60)])  # still raining a little: nothing new to say
        assert more == []
        up = run(eng, [rain(50.0, 70)])  # the windows remembered the first 50 mm: 100.5 mm in 3 h is red
        assert [(w.key, w.state, w.level, w.version) for w in up if w.key == "rainstorm:RG-1"] == [
            ("rainstorm:RG-1", WarningState.UPGRADED, Level.RED, 2)]
    with StateStore(path) as store:
        eng = Engine(cfg(), store)
        dry = run(eng, [rain(0.0, 70 + 10 * i) for i in range(1, 80)])  # dry for 13 h
        lifted = [w for w in dry if w.key == "rainstorm:RG-1" and w.state is WarningState.LIFTED]
        assert len(lifted) == 1 and lifted[0].version > 2
        assert lifted[0].issued_at == at(minutes=50)  # the episode still knows when it began


def test_warnings_are_queued_in_the_same_transaction_as_the_state(tmp_path):
    path = tmp_path / "s.sqlite"
    with StateStore(path) as store:
        eng = Engine(cfg(), store)
        run(eng, [rain(60.0, 10)])
        queued = store.outbox()
        assert sorted(w.key for _, w in queued) == ["rainstorm:RG-1", "torrent:RG-1"]
        store.published(queued[0][0])
        assert store.outbox_depth == len(queued) - 1
    # what was not acknowledged is still there for the next process to publish
    with StateStore(path) as store:
        assert store.outbox_depth == len(queued) - 1
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM lifecycle").fetchone()[0] == 2


def test_an_unreadable_pack_state_is_dropped_with_a_log_not_a_crash(tmp_path, caplog):
    path = tmp_path / "s.sqlite"
    with StateStore(path) as store:
        store.save({"rain": {"rg-1": {"no_such_field": 1, "site": "RG-1", "bins": "not a dict"}}}, {}, [])
    with StateStore(path) as store:
        eng = Engine(cfg(), store)
        run(eng, [rain(60.0, 10)])
        assert eng.active("rainstorm:RG-1") == Level.ORANGE


def test_rain_evaluation_is_incremental_and_needs_no_database(tmp_path):
    eng = Engine(cfg())  # no store at all: pure in-memory evaluation
    ws = run(eng, [rain(2.0, i) for i in range(1, 26)])
    assert eng.active("rainstorm:RG-1") == Level.ORANGE and ws
