"""The outbox: committed in order, survives reopening, bounded with a counted policy when full."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from edge.outbox import DROPPED, Outbox
from edge.uplink import batch_payload
from yujing.model import Reading, ReadingBatch

T = datetime(2026, 7, 14, 3, 5, tzinfo=timezone.utc)


def readings(n: int, start: int = 0) -> list[Reading]:
    return [Reading(id=f"r{i}", site="S", sensor="d", quantity="level_m", value=i, unit="m", ts=T)
            for i in range(start, start + n)]


async def test_rows_come_back_in_commit_order_and_acked_rows_are_gone_after_reopening(tmp_path):
    path = tmp_path / "ob.sqlite"
    async with Outbox(path, "gw") as ob:
        await ob.put(readings(5))
        await ob.put(readings(5, 5))
        rows = await ob.peek(0, 4)
        assert [r.id for r in rows] == ["r0", "r1", "r2", "r3"]
        assert [r.id for r in await ob.peek(rows[-1].seq, 100)] == [f"r{i}" for i in range(4, 10)]
        await ob.ack([r.seq for r in rows])
        assert ob.depth == 6
    async with Outbox(path, "gw") as ob:
        assert ob.depth == 6
        assert [r.id for r in await ob.peek(0, 100)] == [f"r{i}" for i in range(4, 10)]


async def test_the_database_is_in_wal_mode_with_full_sync(tmp_path):
    import sqlite3
    async with Outbox(tmp_path / "ob.sqlite", "gw") as ob:
        await ob.put(readings(1))
        assert ob._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert sqlite3.connect(tmp_path / "ob.sqlite").execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1


@pytest.mark.parametrize(("policy", "kept"), [
    ("drop_oldest", [f"r{i}" for i in range(5, 15)]),
    ("drop_newest", [f"r{i}" for i in range(10)]),
])
async def test_a_full_outbox_applies_its_policy_and_counts_every_dropped_reading(tmp_path, caplog, policy, kept):
    gw = f"gw-{policy}"
    async with Outbox(tmp_path / "ob.sqlite", gw, limit=10, when_full=policy) as ob:
        for start in (0, 5, 10):
            await ob.put(readings(5, start))
        assert [r.id for r in await ob.peek(0, 100)] == kept
        assert ob.depth == 10 and ob.dropped == 5
        assert DROPPED.labels(gw, policy)._value.get() == 5
    assert "outbox full" in caplog.text
    async with Outbox(tmp_path / "ob.sqlite", gw, limit=10, when_full=policy) as ob:
        assert ob.dropped == 5  # the count survives restarts, for the heartbeat


def test_a_drained_chunk_is_a_valid_reading_batch_with_the_committed_readings(tmp_path):
    import asyncio

    async def go() -> bytes:
        async with Outbox(tmp_path / "ob.sqlite", "gw") as ob:
            await ob.put(readings(3))
            return batch_payload("gw", await ob.peek(0, 10))

    batch = ReadingBatch.model_validate_json(asyncio.run(go()))
    assert batch.gateway == "gw" and batch.readings == readings(3)
