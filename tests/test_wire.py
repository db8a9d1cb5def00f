"""The one codec of the bus (yujing/wire.py): heartbeats and loss reports survive a round trip, keep the
timestamp spelling every reader has always parsed, and one bad field never voids a heartbeat."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from yujing import wire
from yujing.errors import PayloadError

T = datetime(2026, 7, 14, 8, 30, tzinfo=UTC)


def test_a_heartbeat_round_trips_with_its_timestamps_and_counts():
    beat = wire.GatewayStatus(gateway="gw-1", online=False, ts=T, started=T - timedelta(hours=1), uptime_s=3600.0,
                              outbox_depth=4, outbox_dropped=2, published=99, drill=True,
                              devices={"rg-1": {"state": "ok"}})
    doc = json.loads(wire.encode(beat))
    assert doc["ts"] == "2026-07-14T08:30:00+00:00"  # isoformat(), as the edge always sent it
    assert wire.decode_status(wire.encode(beat)) == beat


def test_a_loss_report_round_trips_and_names_its_reason():
    report = wire.LossReport(component="collector-c1", dropped=12, reason=wire.LossReason.DISK_FULL,
                             ts=T.astimezone(timezone(timedelta(hours=8))))
    doc = json.loads(wire.encode(report))
    assert doc == {"component": "collector-c1", "dropped": 12, "reason": "disk-full", "ts": "2026-07-14T16:30:00+08:00"}
    assert wire.decode_loss(wire.encode(report)).ts == T


@pytest.mark.parametrize("field, bad", [("outbox_dropped", -1), ("outbox_dropped", True), ("ts", "yesterday"),
                                        ("devices", [1]), ("uptime_s", "long"), ("gateway", 7)])
def test_one_bad_field_of_a_heartbeat_is_read_as_unknown_and_the_rest_still_counts(field, bad):
    beat = wire.decode_status(json.dumps({"online": False, "outbox_dropped": 3, field: bad}).encode())
    assert beat.online is False
    assert beat.outbox_dropped == (3 if field != "outbox_dropped" else None)


@pytest.mark.parametrize("payload, reason", [(b"{not json", wire.Reject.JSON), (b"[1]", wire.Reject.TYPE),
                                             (b'{"dropped": -5}', wire.Reject.SCHEMA),
                                             (b'{"dropped": "many"}', wire.Reject.SCHEMA)])
def test_a_loss_report_without_a_count_is_refused_with_a_reason(payload, reason):
    with pytest.raises(PayloadError) as e:
        wire.decode_loss(payload)
    assert e.value.reason == reason
