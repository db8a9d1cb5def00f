"""A gauge's bins are saved an hour a row, only the hours that changed: a save costs what changed, not the day.

Restarts from such a state judge as an unbroken run does; expired hours are deleted; a state saved before (the
bins inside the gauge's row) still loads and moves to hour rows at its next save."""

from __future__ import annotations

import json

from rules.engine import Engine
from rules.rain import totals
from rules.store import StateStore
from testing.rules import at, deployment, reading, site
from yujing.model import Q

CFG = deployment([site("RG-1", "rain", rain={"blue": {1: 8}, "yellow": {3: 30}, "orange": {6: 60},
                                             "red": {12: 200}})])


def stream(hours: int) -> list:
    """A counter read every minute, raining on and off."""
    out, count = [], 0.0
    for m in range(hours * 60):
        count = round(count + (0.3 if (m // 90) % 2 == 0 else 0.0), 1)
        out.append(reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, count, at(minutes=m)))
    return out


def rows(path) -> dict[str, dict]:
    with StateStore(path) as store:
        return {entity: data for pack, entity, data in store.pack_states() if pack == "rain"}


def hour_rows(saved: dict[str, dict]) -> dict[int, dict]:
    return {int(e.split("\x1fbins")[1]): v for e, v in saved.items() if "\x1fbins" in e}


def test_restarting_from_hour_rows_judges_as_an_unbroken_run(tmp_path):
    unbroken = Engine(CFG)
    want, got = [], []
    eng = Engine(CFG, StateStore(tmp_path / "s.sqlite"))
    for i, r in enumerate(stream(30), 1):
        want += [(w.key, w.version, w.level, w.state) for w in unbroken.feed(r)]
        ws = eng.feed(r)
        got += [(w.key, w.version, w.level, w.state) for w in ws]
        eng.commit(ws)
        if i % 337 == 0:  # a restart, at odd points of the hour
            eng.store.close()
            eng = Engine(CFG, StateStore(tmp_path / "s.sqlite"))
            gauge = eng.packs["rain"].gauges.items["rg-1"]
            assert totals(gauge) == totals(unbroken.packs["rain"].gauges.items["rg-1"])
    eng.store.close()
    assert got == want and any(s.value == "lifted" for *_, s in want)


def test_the_state_file_holds_the_hours_the_gauge_holds_and_a_save_writes_only_what_changed(tmp_path):
    eng = Engine(CFG, StateStore(tmp_path / "s.sqlite"))
    for r in stream(27):
        eng.commit(eng.feed(r))
    gauge = eng.packs["rain"].gauges.items["rg-1"]
    saved = rows(tmp_path / "s.sqlite")
    assert saved["rg-1"]["bins"] == {}
    by_hour: dict[int, dict] = {}
    for m, mm in gauge.bins.items():
        by_hour.setdefault(m // 60, {})[str(m)] = mm
    assert hour_rows(saved) == by_hour  # expired hours were deleted, none is missing
    assert max(by_hour) - min(by_hour) <= 24
    written: list = []
    real = eng.store.write
    eng.store.write = lambda rows_: (written.append(rows_), real(rows_))[1]  # type: ignore[method-assign]
    eng.commit(eng.feed(reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, gauge.last_count + 0.5, at(hours=27))))
    (save,) = written
    rain = sorted(e for p, e, _ in save.packs if p == "rain") + sorted(e for p, e in save.dropped if p == "rain")
    assert rain[0] == "rg-1" and 2 <= len(rain) <= 3  # the gauge, the hour it reached (and one expiring)
    eng.store.close()


def test_a_state_saved_with_the_bins_in_the_gauges_row_loads_and_moves_them_to_hour_rows(tmp_path):
    old = Engine(CFG)
    for r in stream(3):
        old.feed(r)
    st = old.packs["rain"].gauges.items["rg-1"]
    row = {k: v for k, v in vars(st).items() if k != "touched"}  # as the code before saved it
    with StateStore(tmp_path / "s.sqlite") as store:
        store.db.execute("INSERT INTO pack_state (pack, entity, json) VALUES ('rain', 'rg-1', ?)",
                         (json.dumps(row),))
        store.db.commit()
    eng = Engine(CFG, StateStore(tmp_path / "s.sqlite"))
    assert totals(eng.packs["rain"].gauges.items["rg-1"]) == totals(st)
    r = reading("RG-1", "rg-1", Q.RAIN_COUNT_MM, st.last_count + 0.5, at(hours=3))
    eng.commit(eng.feed(r))
    old.feed(r)
    eng.store.close()
    saved = rows(tmp_path / "s.sqlite")
    assert saved["rg-1"]["bins"] == {} and set(hour_rows(saved)) == {m // 60 for m in st.bins}
    again = Engine(CFG, StateStore(tmp_path / "s.sqlite"))
    assert totals(again.packs["rain"].gauges.items["rg-1"]) == totals(st)
    again.store.close()
