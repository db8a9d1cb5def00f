"""Hostile MQTT reading payloads (hypothesis strategies) for the codec's fuzz tests: garbage bytes, wrong
types, NaN, huge numbers, deep nesting, truncation, as a sloppy or malicious device would send them."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from yujing.model import Quality


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


VALID = {"id": "r1", "site": "s1", "sensor": "g1", "quantity": "rain_mm", "value": 1.5, "unit": "mm",
         "ts": "2026-06-01T00:00:00Z"}


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.text(max_size=80),
                      st.floats(allow_nan=True, allow_infinity=True), st.just(1e308), st.just("NaN"),
                      st.just("Infinity"), st.just("x" * 5000))


json_any = st.recursive(json_leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                           st.dictionaries(st.text(max_size=10), kids, max_size=4)),
                        max_leaves=20)


@st.composite
def wrong_reading(draw) -> dict:
    """A reading with some fields replaced, dropped or added: wrong types, NaN, huge, nested."""
    doc = dict(VALID)
    for k in draw(st.lists(st.sampled_from([*VALID, "quality", "gateway", "meta", "drill", "extra"]), max_size=3)):
        action = draw(st.sampled_from(["replace", "drop"]))
        if action == "drop":
            doc.pop(k, None)
        else:
            doc[k] = draw(json_any)
    if draw(st.booleans()):
        doc["quality"] = draw(st.sampled_from([q.value for q in Quality]))
    return doc


@st.composite
def payloads(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "reading", "batch", "list", "any", "truncated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "any":
        doc = draw(json_any)
    elif kind == "reading":
        doc = draw(wrong_reading())
    elif kind == "list":
        doc = draw(st.lists(wrong_reading(), max_size=3))
    else:
        doc = {"gateway": draw(st.one_of(st.just("gw1"), json_leaf)),
               "readings": draw(st.one_of(st.lists(wrong_reading(), max_size=3), json_any))}
    raw = json.dumps(doc, allow_nan=True).encode()  # NaN / Infinity literals as a sloppy device would send
    if kind == "truncated":
        raw = json.dumps(draw(wrong_reading())).encode()
        raw = raw[:draw(st.integers(0, len(raw)))]
    return raw
