"""The intake's row decoder (collector.rows.decode_rows) against the reference Reading decoder (decode):
the same payloads accepted with the same readings, the same rejects with the same reasons, and rows that
write the same line protocol and spool the same JSON; the in-process hand-off still gets Reading objects."""

from __future__ import annotations

import gc
import json
import math
from datetime import datetime, timedelta, timezone

import pytest
import testing.payloads as fuzz  # the hostile-payload strategy the fuzz tests use
from conftest import wait_for
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter
from testing.collector import make_config, publish, readings, running

from collector.config import SqliteStore
from collector.rows import Row, decode_rows, rows_from_json, rows_json, to_readings
from yujing.wire import Reject, decode
from collector.spool import Spool
from collector.stores.lineproto import lines
from yujing.errors import PayloadError
from yujing.model import Quality, Reading

TOPIC = "yujing/readings/gw-topic"
MAX = 64 * 1024
VALID = {"id": "r1", "site": "s1", "sensor": "g1", "quantity": "rain_mm", "value": 1.5, "unit": "mm",
         "ts": "2026-06-01T00:00:00Z"}


def outcome(decoder, raw: bytes) -> tuple[str, str] | list[str]:
    """A decoder's result in comparable form: (reason, message) of its reject, or the readings as JSON."""
    try:
        got = decoder(raw, TOPIC, MAX)
    except PayloadError as e:
        assert e.topic == TOPIC
        return (e.reason, str(e))
    if got and isinstance(got[0], Row):
        got = to_readings(got)
    return [r.model_dump_json() for r in got]  # JSON: NaN compares equal to itself there


def same(raw: bytes) -> None:
    ref = outcome(decode, raw)
    assert outcome(decode_rows, raw) == ref
    if isinstance(ref, list):
        rows, old = decode_rows(raw, TOPIC, MAX), decode(raw, TOPIC, MAX)
        assert lines(rows) == lines(old)
        assert [r.model_dump_json() for r in to_readings(rows_from_json(rows_json(rows)))] == ref  # spooled, replayed


def body(**change) -> dict:
    return {k: v for k, v in {**VALID, **change}.items() if v is not ...}


# --- rejects: the reference's reason and message -------------------------------------------------------------

@pytest.mark.parametrize("raw, reason", [
    (b"not json", Reject.JSON),
    (b'{"gateway": "gw", "readings": [', Reject.JSON),
    (json.dumps(body(value="high")).encode(), Reject.TYPE),
    (json.dumps({"gateway": "gw", "readings": [body(), body(id="r2", drill="maybe")]}).encode(), Reject.TYPE),
    (json.dumps(body(value="NaN")).encode(), Reject.NAN),
    (json.dumps(body(value="-Infinity", quality="ok")).encode(), Reject.NAN),
    (json.dumps({"gateway": "gw", "readings": [body(), body(id="r2", value="NaN")]}).encode(), Reject.NAN),
    (json.dumps(body(ts="2026-06-01T00:00:00")).encode(), Reject.SCHEMA),  # naive
    (json.dumps(body(quantity="Rain mm")).encode(), Reject.SCHEMA),
    (json.dumps(body(extra=1)).encode(), Reject.SCHEMA),
    (json.dumps(body(site=...)).encode(), Reject.SCHEMA),
    (json.dumps({"gateway": "", "readings": [body()]}).encode(), Reject.SCHEMA),
    (json.dumps({"gateway": "gw", "readings": []}).encode(), Reject.EMPTY),
])
def test_rows_reject_with_the_reference_reason_and_message(raw, reason):
    with pytest.raises(PayloadError) as e:
        decode_rows(raw, TOPIC, MAX)
    assert e.value.reason is reason
    same(raw)


def test_oversize_is_rejected_before_parsing():
    with pytest.raises(PayloadError) as e:
        decode_rows(b"x" * (MAX + 1), TOPIC, MAX)
    assert e.value.reason is Reject.OVERSIZE


# --- accepted: NaN, gateway --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_value_with_quality_not_ok_is_accepted_and_written_without_value(value):
    raw = json.dumps({"gateway": "gw", "readings": [body(), body(id="r2", value=value, quality="comm-error")]}).encode()
    ok, bad = decode_rows(raw, TOPIC, MAX)
    assert math.isfinite(ok.value) and not math.isfinite(bad.value) and bad.quality == Quality.COMM_ERROR
    assert " value=" not in lines([bad]).split(" ", 1)[1].split(" ", 1)[0]
    same(raw)


def test_gateway_is_kept_or_filled_from_the_batch_or_the_topic():
    batch = {"gateway": "gw-batch",
             "readings": [body(id="a"), body(id="b", gateway="gw-own"), body(id="c", gateway="")]}
    rows = decode_rows(json.dumps(batch).encode(), TOPIC, MAX)
    assert [r.gateway for r in rows] == ["gw-batch", "gw-own", "gw-batch"]
    assert [r.gateway for r in decode_rows(json.dumps(body()).encode(), TOPIC, MAX)] == ["gw-topic"]
    assert [r.gateway for r in decode_rows(json.dumps(body(gateway="g")).encode(), TOPIC, MAX)] == ["g"]
    same(json.dumps(batch).encode())


def test_rows_are_invisible_to_the_garbage_collector():
    """A row is never tracked, with or without meta: the young collections a busy intake triggers do not walk it."""
    raw = json.dumps({"gateway": "gw", "readings": [body(id="a", quality="stuck"), body(id="b")]}).encode()
    assert not any(gc.is_tracked(r) for r in decode_rows(raw, TOPIC, MAX))
    (with_meta,) = decode_rows(json.dumps(body(meta={"bearing": "90"})).encode(), TOPIC, MAX)
    assert with_meta.meta == {"bearing": "90"} and not gc.is_tracked(with_meta)
    (lax,) = decode_rows(json.dumps(body(value="1.5")).encode(), TOPIC, MAX)  # the reference's lax path
    assert lax.value == 1.5 and not gc.is_tracked(lax)


def test_a_timestamp_with_an_offset_is_the_same_instant_everywhere():
    raw = json.dumps(body(ts="2026-06-01T08:00:00.123456+08:00")).encode()
    (row,) = decode_rows(raw, TOPIC, MAX)
    (ref,) = decode(raw, TOPIC, MAX)
    assert row.ts == ref.ts == datetime(2026, 6, 1, 0, 0, 0, 123456, tzinfo=timezone.utc)
    assert lines([row]).endswith(" 1780272000123456000")
    same(raw)


@pytest.mark.parametrize("ts", [
    "2026-06-01t00:00:00z", "2026-06-01 00:00:00Z", "2026-06-01T00:00:00+0800", "2026-06-01T00:00Z",
    "2026-06-01T00:00:00.1234567Z", "2026-06-01T00:00:00.9999999Z", "2026-06-01T00:00:00.000000000001+08:00",
    "9999-12-31T23:59:59.9999999Z", "2026-06-01T00:00:00,5Z", "2026-06-01T00:00:00-00:00",
    "2026-06-01T00:00:00+23:59", "2026-06-01T23:59:60Z", "2026-06-01T24:00:00Z", "2026-02-29T00:00:00Z",
    "20260601T000000Z", "2026-06-01T00:00:00+08", 1780272000, 1780272000.5, "1780272000",
    "2026-06-01T00:00:00.123456\\u0037Z", "2026-06-01T00:00:00\\u002e1234567+08:00"])
def test_timestamps_in_every_form_are_read_as_the_reference_reads_them(ts):
    """msgspec and pydantic differ on some forms (pydantic truncates a 7th fractional digit, msgspec rounds;
    pydantic takes numbers and 'HH:MM'): the intake must not."""
    for raw in (json.dumps(body(ts=ts)), json.dumps({"gateway": "gw", "readings": [body(), body(id="r2", ts=ts)]})):
        same(raw.replace("\\\\u", "\\u").encode())  # a digit or point written as \u0037, \u002e


# --- equivalence on corpora ------------------------------------------------------------------------------

text = st.text(min_size=1, max_size=12)
valid_reading = st.fixed_dictionaries(
    {"id": text, "site": text, "sensor": text, "quantity": st.from_regex(r"^[a-z][a-z0-9_]{0,10}$", fullmatch=True),
     "value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**6)),
     "unit": st.text(max_size=4),
     "ts": st.builds(lambda s, off: (datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=s))
                     .astimezone(timezone(timedelta(minutes=off))).isoformat(),
                     st.integers(0, 10**16), st.integers(-14 * 60, 14 * 60))},
    optional={"quality": st.sampled_from([q.value for q in Quality]), "gateway": st.text(max_size=6),
              "drill": st.booleans(), "meta": st.dictionaries(text, text, max_size=3)})


@st.composite
def valid_payloads(draw) -> bytes:
    rs = draw(st.lists(valid_reading, min_size=1, max_size=5))
    for r in rs:  # non-finite values where the quality allows them
        if r.get("quality", "ok") != "ok" and draw(st.booleans()):
            r["value"] = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
    doc = {"gateway": draw(text), "readings": rs} if len(rs) > 1 or draw(st.booleans()) else rs[0]
    return json.dumps(doc).encode()


@fuzz.FUZZ
@given(valid_payloads())
def test_valid_payloads_give_the_same_readings_lines_and_spool_json(raw: bytes):
    assert isinstance(outcome(decode, raw), list)
    same(raw)


@fuzz.FUZZ
@given(fuzz.payloads())
def test_hostile_payloads_are_accepted_or_rejected_exactly_as_by_the_reference(raw: bytes):
    same(raw)


def test_spool_json_is_unchanged_for_readings_and_read_back_as_rows(tmp_path):
    rs = readings(5) + [Reading(id="n", site="s", sensor="x", quantity="q", value=float("nan"), unit="",
                                ts=datetime(2026, 1, 1, tzinfo=timezone.utc), quality=Quality.STUCK, meta={"a": "b"})]
    assert rows_json(rs) == TypeAdapter(list[Reading]).dump_json(rs)  # the format older spools hold
    spool = Spool(tmp_path / "s.spool")
    spool.put(rs, 1.0)
    spool.put(decode_rows(json.dumps(body(ts="2026-06-01T08:00:00+08:00")).encode(), TOPIC, MAX), 2.0)
    _, back = spool.oldest(100)
    spool.close()
    assert [r.model_dump_json() for r in to_readings(back)] == [r.model_dump_json() for r in rs] + [
        r.model_dump_json() for r in decode(json.dumps(body(ts="2026-06-01T00:00:00Z")).encode(), TOPIC, MAX)]


# --- the in-process hand-off ---------------------------------------------------------------------------

async def test_the_in_process_hook_gets_reading_objects_equal_to_those_sent(mosquitto, prefix, tmp_path):
    cfg = make_config(tmp_path, mosquitto.port, prefix, SqliteStore(type="sqlite", path=str(tmp_path / "r.db")))
    got: list = []
    sent = readings(30, gateway="gw-1")
    async with running(cfg, on_accepted=got.extend):
        await publish(mosquitto.port, prefix, sent, per_message=10)
        await publish(mosquitto.port, prefix, sent[:10], per_message=10)  # a re-send: not handed on twice
        await wait_for(lambda: len(got) >= 30, 15, "30 readings handed to the hook")
    assert all(type(r) is Reading for r in got)
    assert got == sent
