"""A broker that forgets the collector's persistent session has lost the messages it held: said, counted."""

from __future__ import annotations

import asyncio
import logging

from conftest import wait_for
from prometheus_client import REGISTRY
from servers import Mosquitto
from testing.collector import subscribed as reconnected
from testing.collector import make_config, publish, readings, running

from collector.config import SqliteStore

LOST = "yujing_collector_mqtt_session_lost_total"


def lost() -> float:
    return REGISTRY.get_sample_value(LOST) or 0.0


async def test_a_broker_restarted_without_our_session_is_reported_and_counted(private_server, prefix, tmp_path, caplog):
    broker = private_server(Mosquitto)
    cfg = make_config(tmp_path, broker.port, prefix, SqliteStore(type="sqlite"))
    before = lost()
    with caplog.at_level(logging.ERROR, logger="yujing.collector"):
        async with running(cfg):
            await publish(broker.port, prefix, readings(5))
            await asyncio.to_thread(broker.stop, True)
            await wait_for(lambda: not reconnected(cfg), 10, "the collector sees the broker gone")
            for stale in broker.dir.glob("mosquitto.db*"):  # the broker comes back with no memory of us
                stale.unlink()
            await asyncio.to_thread(broker.start)
            await wait_for(lambda: reconnected(cfg), 20, "the collector back on the new broker")
    assert lost() == before + 1
    assert any("forgotten the collector's session" in r.getMessage() for r in caplog.records)


async def test_a_broker_restarted_with_our_session_is_not_a_loss(private_server, prefix, tmp_path):
    broker = private_server(Mosquitto)
    cfg = make_config(tmp_path, broker.port, prefix, SqliteStore(type="sqlite"))
    before = lost()
    async with running(cfg):
        await publish(broker.port, prefix, readings(5))
        await asyncio.to_thread(broker.stop)  # a clean stop saves the sessions
        await wait_for(lambda: not reconnected(cfg), 10, "the collector sees the broker gone")
        await asyncio.to_thread(broker.start)
        await wait_for(lambda: reconnected(cfg), 20, "the collector back on the same broker")
    assert lost() == before
