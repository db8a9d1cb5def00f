"""MQTT sources: third-party sensors and fire cameras publishing JSON, mapped to readings by config."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from edge.devices.base import QUANTITY, Checks, DeviceBase, Strict
from yujing.config.secrets import Secret


class MqttField(Checks):
    """One reading from a JSON message: ``value`` and ``meta`` values are dotted paths into it."""

    quantity: str = Field(pattern=QUANTITY)
    value: str
    unit: str = ""
    sensor: str = ""
    match: dict[str, str] = Field(default_factory=dict)  # only messages whose path equals this value
    meta: dict[str, str] = Field(default_factory=dict)  # meta key → path


class MqttBroker(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: Secret | None = None


class MqttSourceDevice(DeviceBase):
    """Third-party sensors and fire cameras that publish JSON; silence is normal (no detection)."""

    silence_is_normal: ClassVar[bool] = True

    type: Literal["mqtt"]
    topic: str
    broker: MqttBroker | None = None  # None: the gateway's uplink broker (mqtt: section)
    ts: str | None = None  # path of the device's ISO-8601 timestamp, if it sends one
    fields: list[MqttField] = Field(min_length=1)

    def values(self) -> list[Any]:
        return list(self.fields)


DEVICES = (MqttSourceDevice,)
