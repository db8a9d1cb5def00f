"""A clean stop of the rules service in the middle of a stream: every message whose state it saved is
acknowledged and read by the broker before the socket closes (the broker does not send it again).

Real Mosquitto, the service's persistent session, a publisher still streaming while the service stops; after
the restart, a redelivered message whose readings were already judged and saved is counted as a duplicate.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import wait_for
from prometheus_client import REGISTRY
from testing.collector import T0, publish, readings
from testing.rules import Service, deployment, site

from yujing.clock import Clock
from yujing.runtime import Runtime

pytestmark = pytest.mark.timeout(150)


def judged() -> float:
    return REGISTRY.get_sample_value("yujing_rules_readings_total") or 0.0


def duplicates() -> float:
    return REGISTRY.get_sample_value("yujing_rules_rejected_total", {"reason": "duplicate"}) or 0.0


async def test_a_clean_stop_mid_stream_leaves_no_saved_message_for_the_broker_to_send_again(
        mosquitto, prefix, tmp_path):
    cfg = deployment([site("RG-1", "rain")], data_dir=str(tmp_path / "var"))
    cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(update={"port": mosquitto.port, "topic_prefix": prefix})})
    total = 3000
    stream = readings(total, site="RG-1")  # rain, a second apart
    j0, d0 = judged(), duplicates()
    streaming: asyncio.Task | None = None
    for i in range(2):  # stop twice while the stream goes on
        async with Service(Runtime(cfg, Clock(start=T0))):  # (subscribed: the broker keeps what comes now)
            if streaming is None:  # one reading per message
                streaming = asyncio.create_task(publish(mosquitto.port, prefix, stream))
            want = (i + 1) * total // 4
            await wait_for(lambda: judged() - j0 >= want, 60, f"{want} readings judged")
    assert streaming is not None and not streaming.done(), "the stream outlasts the stops"
    await asyncio.wait_for(streaming, 60)
    async with Service(Runtime(cfg, Clock(start=T0))):
        await wait_for(lambda: judged() - j0 >= total, 60, "every reading judged")
    assert duplicates() - d0 == 0, "the broker sent again messages whose readings were saved"
    assert judged() - j0 == total
