"""A clean stop of the rules service in the middle of a stream: every message whose state it saved is
acknowledged and read by the broker before the socket closes (the broker does not send it again).

Real Mosquitto, the service's persistent session, a publisher still streaming while the service stops; after
the restart, a redelivered message whose readings were already judged and saved is counted as a duplicate.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from conftest import wait_for
from prometheus_client import REGISTRY
from test_rules_service import T0, counter, demo_config, publish
from testing.rules import Service

from yujing.clock import Clock
from yujing.runtime import Runtime

pytestmark = pytest.mark.timeout(150)


def judged() -> float:
    return REGISTRY.get_sample_value("yujing_rules_readings_total") or 0.0


def duplicates() -> float:
    return REGISTRY.get_sample_value("yujing_rules_rejected_total", {"reason": "duplicate"}) or 0.0


async def test_a_clean_stop_mid_stream_leaves_no_saved_message_for_the_broker_to_send_again(
        mosquitto, prefix, tmp_path):
    cfg = demo_config(tmp_path, mosquitto.port, prefix)
    total = 3000
    stream = [counter(100 + i * 0.01, T0 + timedelta(minutes=i)) for i in range(total)]
    j0, d0 = judged(), duplicates()
    streaming: asyncio.Task | None = None
    for i in range(2):  # stop twice while the stream goes on
        async with Service(Runtime(cfg, Clock(start=T0))):  # (subscribed: the broker keeps what comes now)
            if streaming is None:  # one reading per message
                streaming = asyncio.create_task(publish(mosquitto.port, prefix, stream, batch=1))
            want = (i + 1) * total // 4
            await wait_for(lambda: judged() - j0 >= want, 60, f"{want} readings judged")
    assert streaming is not None and not streaming.done(), "the stream outlasts the stops"
    await asyncio.wait_for(streaming, 60)
    async with Service(Runtime(cfg, Clock(start=T0))):
        await wait_for(lambda: judged() - j0 >= total, 60, "every reading judged")
    assert duplicates() - d0 == 0, "the broker sent again messages whose readings were saved"
    assert judged() - j0 == total
