"""What the broker holds, asked as a client would."""

from __future__ import annotations

import paho.mqtt.client as paho


def session_present(port: int, client_id: str) -> bool:
    """Whether the broker holds a persistent session for ``client_id`` (asking ends it: this connection asks for
    none to outlive it)."""
    got: list[bool] = []
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    c.on_connect = lambda _c, _u, flags, *_: got.append(flags.session_present)
    c.connect("127.0.0.1", port, clean_start=False)
    try:
        for _ in range(100):
            c.loop(timeout=0.1)
            if got:
                return got[0]
        raise AssertionError("no CONNACK")
    finally:
        c.disconnect()
