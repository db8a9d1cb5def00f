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
