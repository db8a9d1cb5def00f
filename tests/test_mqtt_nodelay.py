"""Every part's MQTT connection sends at once: no Nagle on our sockets, none on the deployed broker's.

With Nagle on, a QoS 1 PUBLISH written while the previous small packet waits for its TCP ACK is held until the
peer's delayed ACK (40 ms on Linux): that was most of a reading's way to its warning (bench/phone.py).
"""

from __future__ import annotations

import socket

from conftest import ROOT

from yujing import mqtt
from yujing.config import MqttConfig


async def test_a_parts_mqtt_socket_has_nagle_off(mosquitto, prefix):
    cfg = MqttConfig(host="127.0.0.1", port=mosquitto.port, topic_prefix=prefix)
    async with mqtt.client(cfg, f"{prefix}-nodelay") as c:
        sock = c._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        await c.publish(f"{prefix}/x", b"1", qos=1)  # and it still talks


def test_the_deployed_broker_turns_nagle_off_too():
    conf = (ROOT / "deploy" / "mosquitto" / "yujing.conf").read_text().splitlines()
    assert "set_tcp_nodelay true" in [line.strip() for line in conf]
