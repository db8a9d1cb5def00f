"""The one codec of every payload on the bus (see :mod:`yujing.topics`): pure, no I/O, no stage imported.

- readings: a ReadingBatch or a single Reading (JSON) — :func:`decode` below;
- a gateway's heartbeat: :class:`GatewayStatus` (:func:`decode_status`);
- a component's loss report: :class:`LossReport` with a :class:`LossReason` (:func:`decode_loss`);
- a warning: :class:`yujing.model.HazardWarning` (:func:`decode_warning`).

Every decoder raises :class:`yujing.errors.PayloadError` whose ``reason`` is a :class:`Reject` (a metric
label), so every stage refuses a payload for the same reasons, spelled the same way.

Readings: :func:`decode` (``Reading`` objects, pydantic) is the reference every stage agrees with; the rules'
:func:`decode_readings` and the collector's ``collector.rows.decode_rows`` (msgspec, faster) accept exactly the
payloads it accepts, with the same readings, and refuse the rest with its reasons and messages.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, TypeAdapter, ValidationError

from yujing.errors import PayloadError
from yujing.model import HazardWarning, Reading, ReadingBatch

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


def check_size(payload: bytes, topic: str, max_bytes: int) -> None:
    """Refuse a payload larger than ``max_bytes`` before parsing it."""
    if len(payload) > max_bytes:
        raise PayloadError(Reject.OVERSIZE, f"{len(payload)} bytes > {max_bytes}", topic=topic)


def decode(payload: bytes, topic: str, max_bytes: int) -> list[Reading]:
    """The readings in one message; ``gateway`` filled from the batch or the topic when a reading lacks it."""
    check_size(payload, topic, max_bytes)
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
    check_size(payload, topic, max_bytes)
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
