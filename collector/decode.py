"""Payload → readings: pure, no I/O. One message carries a ReadingBatch or a single Reading (JSON).

Validation runs in pydantic-core (Rust) straight from bytes; a rejected payload raises
:class:`yujing.errors.PayloadError` whose ``reason`` is one of :class:`Reject` (a metric label).
"""

from __future__ import annotations

import enum

from pydantic import TypeAdapter, ValidationError

from yujing.errors import PayloadError
from yujing.model import Reading, ReadingBatch


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


def decode(payload: bytes, topic: str, max_bytes: int) -> list[Reading]:
    """The readings in one message; ``gateway`` filled from the batch or the topic when a reading lacks it."""
    if len(payload) > max_bytes:
        raise PayloadError(Reject.OVERSIZE, f"{len(payload)} bytes > {max_bytes}", topic=topic)
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
