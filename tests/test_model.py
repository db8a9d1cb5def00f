"""The shared message model: what every part may rely on."""

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from yujing.model import HazardWarning, Hazard, Level, Quality, Reading, ReadingBatch, WarningState, local_time

T = datetime(2026, 7, 14, 19, 5, tzinfo=timezone.utc)


def reading(**kw):
    base = dict(id="r1", site="RG-1", sensor="rg-1", quantity="rain_mm", value=1.5, unit="mm", ts=T)
    return Reading(**(base | kw))


def test_levels_order_by_severity_red_is_worst():
    assert Level.BLUE < Level.YELLOW < Level.ORANGE < Level.RED
    assert max([Level.YELLOW, Level.RED, Level.BLUE]) is Level.RED
    assert [lv.roman for lv in Level] == ["IV", "III", "II", "I"]
    assert Level.RED.chinese == "红色"


def test_reading_round_trips_through_json_in_utc():
    r = reading(ts=datetime(2026, 7, 15, 3, 5, tzinfo=timezone(timedelta(hours=8))))
    doc = r.model_dump_json()
    assert '"ts":"2026-07-14T19:05:00Z"' in doc
    assert Reading.model_validate_json(doc) == r


def test_naive_timestamp_is_rejected():
    with pytest.raises(ValidationError, match="timezone"):
        reading(ts=datetime(2026, 7, 14, 19, 5))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_value_needs_a_non_ok_quality(value):
    with pytest.raises(ValidationError, match="not finite"):
        reading(value=value)
    assert reading(value=value, quality=Quality.COMM_ERROR).quality is Quality.COMM_ERROR


@pytest.mark.parametrize("field,bad", [("quantity", "Rain mm"), ("id", ""), ("site", "x" * 65)])
def test_reading_fields_are_bounded(field, bad):
    with pytest.raises(ValidationError):
        reading(**{field: bad})


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError, match="extra"):
        Reading.model_validate({**reading().model_dump(), "colour": "red"})


def test_batch_carries_many_readings():
    b = ReadingBatch(gateway="gw-1", readings=[reading(id="a"), reading(id="b")])
    assert [r.id for r in ReadingBatch.model_validate_json(b.model_dump_json()).readings] == ["a", "b"]


def test_warning_id_is_key_and_version():
    w = HazardWarning(key="rainstorm:RG-1", version=3, hazard=Hazard.RAINSTORM, level=Level.BLUE,
                      state=WarningState.UPGRADED, site="RG-1", issued_at=T, updated_at=T)
    assert w.id == "rainstorm:RG-1#3"
    assert HazardWarning.model_validate_json(w.model_dump_json()) == w


def test_people_see_beijing_time():
    assert local_time(T) == "2026-07-15 03:05"
