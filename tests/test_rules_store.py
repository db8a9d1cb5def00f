"""The rules state store: what is saved reads back exactly as it was, whatever encoder wrote it."""

from __future__ import annotations

import json
import math

from rules.store import StateStore, dumps


def test_state_encoding_reads_back_as_json_would_have_written_it():
    states = [
        {"site": "SK-1", "samples": [[1752451200.0, 311.25], [1752451260.5, 311.2500001]], "rising": False},
        {"bins": {29207520: 0.5, 29207521: 1.0}, "sums": {1: 1.5}},  # integer keys: strings, as json writes them
        {"value": None, "since": 0.0},
        {"value": float("nan"), "inf": float("inf")},  # orjson would write null: json writes it instead
        {"big": 10**30},  # past 64 bits: orjson refuses, json writes it
        {"text": "忠县 \"quoted\" \\ \n", "kind": [1, "a", True]},
    ]
    for state in states:
        got = json.loads(dumps(state))
        want = json.loads(json.dumps(state, separators=(",", ":")))
        assert got.keys() == want.keys(), state
        for k in want:
            if isinstance(want[k], float) and math.isnan(want[k]):
                assert math.isnan(got[k])
            else:
                assert got[k] == want[k], (state, k)


def test_saved_pack_state_and_lifecycles_restore_unchanged(tmp_path):
    packs = {"levels": {"sk-1": {"site": "SK-1", "samples": [[1.0, 311.0], [61.0, 311.5]], "rising": True}},
             "equipment": {"rg-1": {"value": float("nan"), "since": 3.0, "last_t": 4.0}}}
    with StateStore(tmp_path / "rules.state.sqlite") as store:
        store.save(packs, {"reservoir:SK-1": {"active": "blue", "version": 2}}, [])
    with StateStore(tmp_path / "rules.state.sqlite") as store:
        saved = {(p, e): d for p, e, d in store.pack_states()}
        lcs = dict(store.lifecycles())
    assert saved[("levels", "sk-1")] == packs["levels"]["sk-1"]
    assert math.isnan(saved[("equipment", "rg-1")]["value"])
    assert lcs == {"reservoir:SK-1": {"active": "blue", "version": 2}}


def test_covered_reading_ids_keep_the_newest_across_saves_and_reopens(tmp_path):
    path = tmp_path / "rules.state.sqlite"
    with StateStore(path) as store:
        store.save({}, {}, [], seen=["a1", "a2", "a3"], keep_seen=5)
        store.save({}, {}, [], seen=["b1", "b2"], keep_seen=5)
        assert store.seen_ids(5) == ["a1", "a2", "a3", "b1", "b2"]
        store.save({}, {}, [], seen=["c1", "c\ud800"], keep_seen=5)  # a lone surrogate: not UTF-8, still kept
        assert store.seen_ids(5) == ["a3", "b1", "b2", "c1", "c\ud800"]  # a3 is still among the last 5
        assert store.seen_ids(3) == ["b2", "c1", "c\ud800"]
    with StateStore(path) as store:
        assert store.seen_ids(5) == ["a3", "b1", "b2", "c1", "c\ud800"]
        store.save({}, {}, [], seen=["d1", "d2", "d3", "d4"], keep_seen=5)
        # the older saves' ids are no longer needed to cover the last 5 but for the newest of them: rows a, b gone
        assert store.seen_ids(10) == ["c1", "c\ud800", "d1", "d2", "d3", "d4"]
        assert store.db.execute("SELECT COUNT(*) FROM seen_batch").fetchone()[0] == 2


def test_reading_ids_saved_one_a_row_by_older_code_are_still_covered_then_moved(tmp_path):
    path = tmp_path / "rules.state.sqlite"
    with StateStore(path) as store:  # as the code before batched ids wrote them: a row per id
        store.db.executemany("INSERT INTO seen (id) VALUES (?)", [(f"old{i}",) for i in range(4)])
    with StateStore(path) as store:
        assert store.seen_ids(10) == ["old0", "old1", "old2", "old3"]
        store.save({}, {}, [], seen=["n1", "n2"], keep_seen=5)
        assert store.seen_ids(10) == ["old1", "old2", "old3", "n1", "n2"]
        store.save({}, {}, [], seen=["n3", "n4", "n5"], keep_seen=5)
        assert store.seen_ids(10) == ["n1", "n2", "n3", "n4", "n5"]
        assert store.db.execute("SELECT COUNT(*) FROM seen").fetchone()[0] == 0
    with StateStore(path) as store:
        assert store.seen_ids(10) == ["n1", "n2", "n3", "n4", "n5"]
