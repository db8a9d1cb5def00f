"""The one codec of every payload on the bus (see :mod:`yujing.topics`): pure, no I/O, no stage imported.

- readings: a ReadingBatch or a single Reading (JSON) — :func:`decode_rows`, :func:`decode` below;
- a gateway's heartbeat: :class:`GatewayStatus` (:func:`decode_status`);
- a component's loss report: :class:`LossReport` with a :class:`LossReason` (:func:`decode_loss`);
- a warning: :class:`yujing.model.HazardWarning` (:func:`decode_warning`).

Every decoder raises :class:`yujing.errors.PayloadError` whose ``reason`` is a :class:`Reject` (a metric
label), so every stage refuses a payload for the same reasons, spelled the same way.

Readings: a rejected payload raises :class:`yujing.errors.PayloadError` whose ``reason`` is one of
:class:`Reject` (a metric label). Two decoders accept exactly the same payloads:

- :func:`decode_rows`, the intake's: each reading a :class:`Row`, a msgspec ``Struct`` with ``Reading``'s fields,
  decoded and checked in C by msgspec. pydantic-core building rows (typed dicts) was a third of the collector's CPU
  on batched uplinks, 1.6 us a reading; msgspec takes 0.4-0.7 (profiled 2026-12-05, ``bench/ingest.py --only d``).
  A row's ``ts`` is aware but keeps the payload's offset (the stores write it as ns since the epoch; ``Reading``
  converts it to UTC); ``value`` is finite unless ``quality`` is not ok; ``quality`` is a plain string.
- :func:`decode`, the reference: ``Reading`` objects (pydantic). msgspec is stricter than pydantic's lax mode
  (``"value": "1.5"``, a timestamp as a number, ``"NaN"``): whatever msgspec refuses, or cannot be sure it reads
  as pydantic does, is handed to the reference, so rejects keep exactly its reasons and messages and what it
  accepts becomes rows. ``tests/test_collector_decode.py`` holds the two to the same output on hostile payloads.

A ``Reading`` and a ``Row`` have the same attributes, so the stores and the spool take either.
"""

from __future__ import annotations

import enum
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, TypeAdapter, ValidationError
from pydantic_core import SchemaSerializer, SchemaValidator, core_schema

from yujing.errors import PayloadError
from yujing.model import HazardWarning, Quality, Reading, ReadingBatch

M = TypeVar("M", bound=BaseModel)


class Reject(enum.StrEnum):
    OVERSIZE = "oversize"  # payload larger than max_payload_bytes
    JSON = "json"  # not JSON at all (garbage, truncated)
    TYPE = "type"  # a field of the wrong type ("value": "high")
    NAN = "nan"  # value not finite while quality says ok
    SCHEMA = "schema"  # missing/extra fields, bad timestamp, too long, bad quantity name
    EMPTY = "empty"  # a batch with no readings


_BATCH = TypeAdapter(ReadingBatch)
_READING = TypeAdapter(Reading)
_TYPE_ERRORS = {"float_parsing", "float_type", "string_type", "bool_parsing", "bool_type", "dict_type",
                "list_type", "int_parsing", "int_type", "model_type", "model_attributes_type"}


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


def _check_size(payload: bytes, topic: str, max_bytes: int) -> None:
    if len(payload) > max_bytes:
        raise PayloadError(Reject.OVERSIZE, f"{len(payload)} bytes > {max_bytes}", topic=topic)


def decode_rows(payload: bytes, topic: str, max_bytes: int) -> list[Row]:
    """The readings in one message as rows; ``gateway`` filled from the batch or the topic when a reading lacks it."""
    _check_size(payload, topic, max_bytes)
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


def decode(payload: bytes, topic: str, max_bytes: int) -> list[Reading]:
    """The readings in one message; ``gateway`` filled from the batch or the topic when a reading lacks it."""
    _check_size(payload, topic, max_bytes)
    try:
        if b'"readings"' in payload:
            batch = _BATCH.validate_json(payload)
            readings, gateway = batch.readings, batch.gateway
        else:
            readings, gateway = [_READING.validate_json(payload)], topic.rsplit("/", 1)[-1]
    except ValidationError as e:
        raise PayloadError(_reason(e), _summary(e), topic=topic) from None
    if not readings:
        raise PayloadError(Reject.EMPTY, "batch carries no readings", topic=topic)
    return [r if r.gateway else r.model_copy(update={"gateway": gateway}) for r in readings]


def decode_readings(payload: bytes, topic: str, max_bytes: int) -> list[Reading]:
    """What :func:`decode` returns, faster: the rules service's decoder.

    The same validation; the difference is the readings that name no gateway (an edge's batch leaves it to
    the batch): :func:`decode` makes a copy of each with ``model_copy``, about a third of its time on such a
    batch, where this fills the field in place: the objects are new and no one else holds them yet.
    (pydantic-core reuses ``Reading``'s own validator for any schema naming the class, so the two Python
    callbacks per reading, ``ts`` to UTC and the NaN check, cannot be left out here the way
    :func:`decode_rows` leaves them out with a typed dict.) ``tests/test_wire_decode_readings.py`` holds the two
    to the same output and the same refusals."""
    _check_size(payload, topic, max_bytes)
    try:
        if b'"readings"' in payload:
            batch = _BATCH.validate_json(payload)
            readings, gateway = batch.readings, batch.gateway
        else:
            readings, gateway = [_READING.validate_json(payload)], topic.rsplit("/", 1)[-1]
    except ValidationError:
        return decode(payload, topic, max_bytes)  # raises with the reference's reason and message
    if not readings:
        raise PayloadError(Reject.EMPTY, "batch carries no readings", topic=topic)
    for r in readings:
        if not r.gateway:
            r.__dict__["gateway"] = gateway
            r.__pydantic_fields_set__.add("gateway")
    return readings


def _reason(e: ValidationError) -> Reject:
    errors = e.errors(include_url=False)
    kinds = {err["type"] for err in errors}
    if "json_invalid" in kinds or "json_type" in kinds:
        return Reject.JSON
    if any(err["type"] == "value_error" and "finite" in err["msg"] for err in errors):
        return Reject.NAN
    if kinds & _TYPE_ERRORS:
        return Reject.TYPE
    return Reject.SCHEMA


def _summary(e: ValidationError) -> str:
    err = e.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "payload"
    more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


# --- warnings ----------------------------------------------------------------------------------------

_WARNING = TypeAdapter(HazardWarning)


def _decode_model(adapter: TypeAdapter[M], payload: bytes, topic: str) -> M:
    """One message of a model's shape (a warning, a heartbeat, a loss report), refused with its reason."""
    try:
        return adapter.validate_json(payload)
    except ValidationError as e:
        raise PayloadError(_reason(e), _summary(e), topic=topic) from None


def decode_warning(payload: bytes, topic: str = "") -> HazardWarning:
    return _decode_model(_WARNING, payload, topic)


def encode(message: BaseModel) -> bytes:
    """Any message of this module (or the model's) as the bytes that go on the bus."""
    return message.model_dump_json().encode()


# --- gateway heartbeats and loss reports ------------------------------------------------------------------


class LossReason(enum.StrEnum):
    """Why a component dropped readings (the equipment warning says it in Chinese, see rules/equipment.py)."""

    SPOOL_FULL = "spool-full"  # the collector's spool reached its bound (spool_full: drop_oldest)
    DISK_FULL = "disk-full"  # the collector's disk refused the spool a write (drop_oldest frees room)
    OUTBOX = "outbox"  # a gateway's outbox dropped readings (its heartbeat's ``outbox_dropped``)


def _count_or_none(v: Any) -> int | None:
    """A cumulative count: a non-negative integer, else None (a bad count must not void the whole heartbeat)."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _iso_or_none(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v
    try:
        return datetime.fromisoformat(v) if isinstance(v, str) else None
    except ValueError:
        return None


def _iso(v: datetime | None) -> str | None:
    """Timestamps on the wire as ``datetime.isoformat()`` writes them (``+00:00``, not pydantic's ``Z``)."""
    return v.isoformat() if v is not None else None


# A heartbeat and a loss report are read field by field: one field of the wrong shape is read as unknown,
# and the rest still counts (a heartbeat's arrival alone says its gateway is alive).
Count = Annotated[int | None, BeforeValidator(_count_or_none)]
When = Annotated[datetime | None, BeforeValidator(_iso_or_none), PlainSerializer(_iso)]
Text = Annotated[str, BeforeValidator(lambda v: v if isinstance(v, str) else "")]


class GatewayStatus(BaseModel):
    """``{prefix}/status/{gateway}``, retained; also the gateway's last will (``online`` false).

    Read loosely (``extra`` ignored, bad counts read as unknown): its arrival alone says the gateway is alive.
    """

    model_config = ConfigDict(extra="ignore")

    gateway: Text = ""
    online: Annotated[bool, BeforeValidator(lambda v: v is not False)] = True  # only an explicit false is offline
    ts: When = None
    started: When = None
    uptime_s: Annotated[float | None, BeforeValidator(lambda v: v if isinstance(v, (int, float)) else None)] = None
    outbox_depth: Count = None
    outbox_dropped: Count = None  # cumulative readings the gateway had to drop (see LossReason.OUTBOX)
    published: Count = None
    drill: bool = False
    devices: Annotated[dict[str, dict[str, Any]], BeforeValidator(lambda v: v if isinstance(v, dict) else {})] = (
        Field(default_factory=dict))  # device id -> edge.status.DeviceStatus.as_json() + its "rejected" counts
    # frames a shared listener got for no configured device: listener -> reason -> count
    unrouted: Annotated[dict[str, dict[str, int]], BeforeValidator(lambda v: v if isinstance(v, dict) else {})] = (
        Field(default_factory=dict))
    # messages the broker refused the uplink (MQTT 5 reason >= 0x80, kept in the outbox): reason -> count
    refused: Annotated[dict[str, int], BeforeValidator(lambda v: v if isinstance(v, dict) else {})] = (
        Field(default_factory=dict))


class LossReport(BaseModel):
    """``{prefix}/loss/{component}``, QoS 1 and retained: readings a component had to drop, cumulative."""

    model_config = ConfigDict(extra="ignore")

    component: Text = ""  # empty: the topic's last level names it
    dropped: Annotated[int, BeforeValidator(lambda v: -1 if _count_or_none(v) is None else v), Field(ge=0)]
    reason: Text = ""  # a LossReason; another component's own words are kept as they are
    ts: When = None


_STATUS = TypeAdapter(GatewayStatus)
_LOSS = TypeAdapter(LossReport)


def decode_status(payload: bytes, topic: str = "") -> GatewayStatus:
    return _decode_model(_STATUS, payload, topic)


def decode_loss(payload: bytes, topic: str = "") -> LossReport:
    return _decode_model(_LOSS, payload, topic)
