"""The collector's rows: readings decoded by msgspec into :class:`Row` structs, and the spool's JSON of them.

- :func:`decode_rows`, the intake's decoder: each reading a :class:`Row`, a msgspec ``Struct`` with ``Reading``'s
  fields, decoded and checked in C. pydantic-core building rows (typed dicts) was a third of the collector's CPU
  on batched uplinks, 1.66 us a reading; this takes 0.80 (profiled 2026-12-05, ``bench/ingest.py --only d``).
  A row's ``ts`` is aware but keeps the payload's offset (the stores write it as ns since the epoch; ``Reading``
  converts it to UTC); ``value`` is finite unless ``quality`` is not ok; ``quality`` is a plain string.
- It accepts exactly the payloads :func:`yujing.wire.decode` (the reference, pydantic) accepts, with the same
  readings: msgspec is stricter than pydantic's lax mode (``"value": "1.5"``, a timestamp as a number,
  ``"NaN"``), so whatever it refuses, or cannot be sure it reads as pydantic does, is handed to the reference,
  whose rejects keep their reasons and messages and whose readings become rows.
  ``tests/test_collector_decode.py`` holds the two to the same output on hostile payloads.
- A ``Reading`` and a ``Row`` have the same attributes, so the stores and the spool take either.

msgspec is imported by the collector only: a gateway's edge agent (armhf boxes have no msgspec wheel) never needs it.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic_core import SchemaSerializer, SchemaValidator, core_schema

from yujing.errors import PayloadError
from yujing.model import Quality, Reading
from yujing.wire import Reject, check_size, decode


class Row(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One reading as the intake holds it: ``Reading``'s fields and limits (checked below), no Python callbacks.

    ``gc=False``: CPython's garbage collector never walks a row (a busy intake holds up to seven batches of
    them; see ``yujing.runtime.tune_gc``). A row holds atomic values and ``meta``, a dict of strings: no cycle.
    ``quantity``'s pattern is checked by :func:`decode_rows` (a regular expression per string in msgspec is
    Python's ``re``: a set of the names seen is cheaper).
    """

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    site: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    sensor: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    quantity: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    value: float
    unit: Annotated[str, msgspec.Meta(max_length=16)]
    ts: Annotated[datetime, msgspec.Meta(tz=True)]
    quality: Literal["ok", "out-of-range", "stuck", "comm-error"] = "ok"
    gateway: Annotated[str, msgspec.Meta(max_length=64)] = ""
    drill: bool = False
    meta: Annotated[dict[str, str], msgspec.Meta(max_length=16)] = {}


def _limits(schema: Any) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k in ("min_length", "max_length", "pattern")}


def _check_row() -> None:
    """Row must accept no payload the reference refuses: its fields and their limits are Reading's."""
    ours = {f.name: f.type for f in msgspec.inspect.type_info(Row).fields}  # type: ignore[attr-defined]
    theirs = Reading.__pydantic_core_schema__["schema"]["fields"]
    assert list(ours) == list(theirs), "Reading's fields changed: revisit Row"
    for name, field in theirs.items():
        schema = field["schema"]
        schema = schema.get("schema", schema) if schema["type"] in ("default", "function-after") else schema
        want = _limits(schema)
        if name == "quantity":
            assert want.pop("pattern") == _QUANTITY_PATTERN, "Reading.quantity's pattern changed: revisit Row"
        if name == "quality":
            assert set(ours[name].values) == {q.value for q in Quality}, "Quality changed: revisit Row"
            continue
        got = {k: getattr(ours[name], k) for k in ("min_length", "max_length") if getattr(ours[name], k, None)}
        assert got == want, f"Reading.{name}'s limits changed: revisit Row"


class _Batch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    gateway: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    readings: list[Row]


_QUANTITY_PATTERN = r"^[a-z][a-z0-9_]*$"
_QUANTITY = re.compile(r"[a-z][a-z0-9_]*")  # fullmatch: the pattern above as pydantic-core's Rust regex reads it
_QUANTITIES: set[str] = set()  # names seen to match it (a county has dozens)
# A timestamp with more than 6 fractional digits (before its Z or offset): msgspec rounds it to the microsecond,
# pydantic truncates. Digits written as \u0030..: the same, unseen by the pattern (no producer of ours escapes ASCII).
_SUBMICRO = re.compile(rb"\.\d{7,}[Zz+\-]")
_ESCAPED_ASCII = b"\\u00"
_check_row()
_ROW_DECODER, _BATCH_DECODER = msgspec.json.Decoder(Row), msgspec.json.Decoder(_Batch)


def _row_schema() -> core_schema.TypedDictSchema:
    """Reading's fields as a typed dict, for the spool's JSON: the same field schemas, without the two Python
    callbacks (``ts`` not converted to UTC; NaN allowed whatever the quality: rows were checked before)."""
    fields = {}
    for name, field in Reading.__pydantic_core_schema__["schema"]["fields"].items():
        schema, required = field["schema"], field["schema"]["type"] != "default"
        if name == "ts":
            assert schema["type"] == "function-after", "Reading.ts changed: revisit the row schema"
            schema = schema["schema"]
        elif name == "quality":
            assert schema["schema"]["cls"] is Quality, "Reading.quality changed: revisit the row schema"
            schema = core_schema.with_default_schema(core_schema.literal_schema([q.value for q in Quality]),
                                                     default=schema["default"].value)
        elif name == "meta":
            schema = schema["schema"]  # without its default_factory: absent when the payload has none
        fields[name] = core_schema.typed_dict_field(schema, required=required)
    return core_schema.typed_dict_schema(fields, extra_behavior="forbid")


_ROWS = SchemaValidator(core_schema.list_schema(_row_schema()), {"cache_strings": "all"})
_ROWS_JSON = SchemaSerializer(core_schema.list_schema(_row_schema()), config={"ser_json_inf_nan": "strings"})


def decode_rows(payload: bytes, topic: str, max_bytes: int) -> list[Row]:
    """The readings in one message as rows; ``gateway`` filled from the batch or the topic when a reading lacks it."""
    check_size(payload, topic, max_bytes)
    rows: list[Row] | None
    try:
        if b'"readings"' in payload:
            batch = _BATCH_DECODER.decode(payload)
            rows, gateway = batch.readings, batch.gateway
        else:
            rows, gateway = [_ROW_DECODER.decode(payload)], topic.rsplit("/", 1)[-1]
    except msgspec.DecodeError:  # and ValidationError, its subclass
        rows = None
    if rows is None or not _plain(rows, gateway) or _SUBMICRO.search(payload) or _ESCAPED_ASCII in payload:
        return [_row(r) for r in decode(payload, topic, max_bytes)]  # raises with the reference's reason and message
    if not rows:
        raise PayloadError(Reject.EMPTY, "batch carries no readings", topic=topic)
    return rows


def _plain(rows: list[Row], gateway: str) -> bool:
    """Every value finite and every quantity name of Reading's pattern (else the reference decides); on the way,
    ``gateway`` filled in where a reading names none."""
    known, isfinite = _QUANTITIES, math.isfinite
    for r in rows:
        if not isfinite(r.value):
            return False
        if r.quantity not in known:
            if not _QUANTITY.fullmatch(r.quantity):
                return False
            if len(known) < 10_000:
                known.add(r.quantity)
        if not r.gateway:
            r.gateway = gateway
    return True


def _row(r: Reading) -> Row:
    return Row(r.id, r.site, r.sensor, r.quantity, r.value, r.unit, r.ts, r.quality.value, r.gateway, r.drill,
               r.meta)


def to_readings(rows: list[Row]) -> list[Reading]:
    """``Reading`` objects for rows (for in-process consumers; ``ts`` becomes UTC)."""
    return [Reading.model_validate(msgspec.structs.asdict(r)) for r in rows]


def rows_json(items: list[Reading] | list[Row]) -> bytes:
    """A JSON array of readings, as ``TypeAdapter(list[Reading]).dump_json`` writes it (the spool's format since
    before rows; NaN and infinities as strings); :func:`rows_from_json` reads it back."""
    if items and isinstance(items[0], Row):
        return _ROWS_JSON.to_json([msgspec.structs.asdict(r) for r in items])  # type: ignore[arg-type]
    return _ROWS_JSON.to_json([vars(r) for r in items])


def rows_from_json(body: bytes) -> list[Row]:
    return [Row(**d) for d in _ROWS.validate_json(body)]
