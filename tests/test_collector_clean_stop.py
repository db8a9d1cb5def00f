"""A clean stop in the middle of a stream: every message the collector stored is acknowledged before it
disconnects (the broker never sends it again), and none it did not store is (nothing is lost).

Real Mosquitto, the collector's persistent session, a publisher still streaming while the collector stops.
After the restart, the broker's redeliveries of stored messages show up as de-duplicated readings.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from conftest import wait_for
from servers import Mosquitto
from testing.collector import make_config, publish, readings, running
from testing.edge import duplicates

from collector.config import SqliteStore

pytestmark = pytest.mark.timeout(150)


def stored(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as c:
        try:
            return c.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        except sqlite3.OperationalError:  # the table not there yet
            return 0


@pytest.mark.parametrize("stops", [1, 3])
async def test_a_clean_stop_mid_stream_acknowledges_every_message_stored_and_none_that_was_not(
        private_server, prefix, tmp_path, stops):
    broker = private_server(Mosquitto)
    db = tmp_path / "r.sqlite"
    cfg = make_config(tmp_path, broker.port, prefix, SqliteStore(type="sqlite", path=str(db)),
                      flush_interval_s=0.05)
    total = 6000
    before = duplicates()
    streaming: asyncio.Task | None = None
    for i in range(stops):  # stop while the stream goes on, each time with more stored
        async with running(cfg):  # (subscribed: the broker keeps the session's messages from now on)
            if streaming is None:  # one reading per message
                streaming = asyncio.create_task(publish(broker.port, prefix, readings(total)))
            want = (i + 1) * total // (stops + 2)
            await wait_for(lambda: stored(db) >= want, 60, f"{want} readings stored")
    assert streaming is not None and not streaming.done(), "the stream outlasts the stops"
    await asyncio.wait_for(streaming, 60)
    async with running(cfg):
        await wait_for(lambda: stored(db) == total, 60, "every reading stored")
    assert duplicates() - before == 0, "the broker redelivered messages whose readings were stored"
