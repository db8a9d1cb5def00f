"""``wire.decode_readings`` (the rules service's fast decoder) against ``wire.decode`` (the reference): for every
payload the same readings, equal field by field with ``ts`` in UTC, or the same refusal, reason and message.

Differential on seeded random payloads: batches and single readings built from valid ones with fields swapped
for values of every kind the codec refuses or accepts (NaN with each quality, wrong types, lengths at and past
the limits, naive and offset timestamps, extra and missing fields, meta), plus garbage and empty batches.
"""

from __future__ import annotations

import json
import random

import pytest

from yujing import wire
from yujing.errors import PayloadError

TOPIC = "yujing/readings/gw-t"
BASE = {"id": "r1", "site": "RG-1", "sensor": "rg-1", "quantity": "rain_count_mm", "value": 1.5, "unit": "mm",
        "ts": "2026-07-14T00:00:00Z"}
SWAPS = {
    "id": ["", "x" * 128, "x" * 129, 7, None],
    "site": ["", "S" * 64, "S" * 65, "readings", 3.0],
    "sensor": ["", "s" * 65, ["a"]],
    "quantity": ["Rain", "level_m", "9x", "", "q" * 65],
    "value": ["NaN", "Infinity", "-Infinity", "high", "1.5", True, None, 0, -3.25, 1e308],
    "unit": ["", "u" * 16, "u" * 17],
    "ts": ["2026-07-14T08:00:00+08:00", "2026-07-14T00:00:00", "2026-07-14", "yesterday", 1752451200,
           "2026-07-13T23:59:59.123456-05:30", None],
    "quality": ["ok", "stuck", "comm-error", "out-of-range", "bad", 1],
    "gateway": ["", "gw-t", "gw-other", "g" * 65],
    "drill": [True, False, "yes", 1],
    "meta": [{}, {"camera": "c1"}, {str(i): "v" for i in range(17)}, {"k": 1}, []],
    "extra": [1],
}


def reading(rnd: random.Random, i: int) -> dict:
    r = {**BASE, "id": f"r{i}", "value": round(rnd.uniform(0, 100), 1)}
    for _ in range(rnd.choice((0, 0, 0, 1, 1, 2))):
        field = rnd.choice(list(SWAPS))
        r[field] = rnd.choice(SWAPS[field])
    if rnd.random() < 0.1:
        r.pop(rnd.choice(list(r)))
    return r


def payload(rnd: random.Random) -> bytes:
    roll = rnd.random()
    if roll < 0.03:
        return rnd.choice((b"{not json", b"", b"[]", b"null", b'{"gateway":"gw-t","readings":[]}',
                           b'{"gateway":"gw-t"}', b'{"readings":[]}'))
    if roll < 0.35:
        return json.dumps(reading(rnd, 0)).encode()
    batch: dict = {"gateway": rnd.choice(("gw-t", "gw-t", "", "g" * 65)),
                   "readings": [reading(rnd, i) for i in range(rnd.randint(1, 6))]}
    if rnd.random() < 0.05:
        batch["extra"] = 1
    return json.dumps(batch).encode()


def outcome(decode, body: bytes, max_bytes: int = 100_000):
    try:
        readings = decode(body, TOPIC, max_bytes)
    except PayloadError as e:
        return ("refused", e.reason, str(e))
    return ("read", readings, [(r.ts.utcoffset(), sorted(r.model_fields_set)) for r in readings])


@pytest.mark.parametrize("seed", range(6))
def test_the_fast_decoder_reads_and_refuses_exactly_what_the_reference_does(seed):
    rnd = random.Random(seed)
    kinds = set()
    for _ in range(400):
        body = payload(rnd)
        want, got = outcome(wire.decode, body), outcome(wire.decode_readings, body)
        assert got == want, body
        kinds.add(want[1] if want[0] == "refused" else "read")
    assert {"read", "nan", "type", "schema", "json"} <= kinds  # the corpus reached every kind of answer


def test_an_oversized_payload_is_refused_by_both_before_it_is_parsed():
    body = json.dumps(BASE).encode()
    assert outcome(wire.decode_readings, body, 10) == outcome(wire.decode, body, 10)
    assert outcome(wire.decode_readings, body, 10)[1] == wire.Reject.OVERSIZE
