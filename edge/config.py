"""Gateways and the devices they read. Each device ``type:`` is a kind in its own folder (edge/devices/)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from edge.devices import kinds
from edge.devices.base import ID, Strict
from yujing.config.mqtt import Tls
from yujing.config.secrets import Secret

# Every kind the registry finds (edge/devices/<folder>/config.py), told apart by ``type:``.
DeviceConfig = Annotated[Union[tuple(k.model for k in kinds().values())], Field(discriminator="type")]


# --- The gateway -----------------------------------------------------------------------------------

class Uplink(Strict):
    """How the outbox drains to the broker."""

    username: str | None = None  # per-gateway credentials (override mqtt.username)
    password: Secret | None = None
    tls: Tls | None = None  # per-gateway TLS (e.g. this gateway's client certificate); overrides mqtt.tls
    batch: int = Field(default=500, ge=1, le=10_000)  # readings per published message at most
    rate_per_s: float = Field(default=2000.0, gt=0)  # drain rate bound (readings per scenario second)
    inflight: int = Field(default=8, ge=1, le=1000)  # messages awaiting PUBACK at once
    publish_timeout_s: float = Field(default=10.0, gt=0)  # no PUBACK by then: the link is deemed down
    reconnect_s: float = Field(default=1.0, gt=0)  # first reconnect delay; doubles up to reconnect_max_s
    reconnect_max_s: float = Field(default=60.0, gt=0)


class GatewayConfig(Strict):
    id: str = Field(min_length=1, max_length=64, pattern=ID)
    name: str = ""
    outbox: str = ""  # SQLite outbox path; default: <data_dir>/edge-<id>.outbox
    outbox_limit: int = Field(default=1_000_000, ge=10)  # readings held at most
    outbox_when_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    heartbeat_s: float = Field(default=60.0, gt=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)  # /metrics and /health of this gateway
    uplink: Uplink = Field(default_factory=Uplink)
    devices: list[DeviceConfig] = Field(default_factory=list)
