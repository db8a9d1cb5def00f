"""SL 651-2014 hydrological RTUs: reports pushed over a serial line or dialled in over TCP."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from edge.devices.base import QUANTITY, Checks, DeviceBase


class Sl651Element(Checks):
    quantity: str = Field(pattern=QUANTITY)
    unit: str = ""


def _default_elements() -> dict[str, Sl651Element]:
    return {
        "20": Sl651Element(quantity="rain_mm", unit="mm"),
        "26": Sl651Element(quantity="rain_count_mm", unit="mm"),
        "39": Sl651Element(quantity="level_m", unit="m"),
    }


class Sl651Device(DeviceBase):
    """An SL 651-2014 RTU that pushes reports; the gateway parses, checks CRC and replies."""

    type: Literal["sl651"]
    station: str = Field(pattern=r"^[0-9]{10}$")  # 5-byte BCD station address, as 10 digits
    transport: Literal["serial", "tcp"] = "serial"
    port: str = ""  # serial: device path
    baudrate: int = 9600
    listen_host: str = "127.0.0.1"  # tcp: the RTU dials in to this gateway
    listen_port: int = Field(default=0, ge=0, le=65535)
    elements: dict[str, Sl651Element] = Field(default_factory=_default_elements)  # hex element id → quantity
    reply: bool = True  # answer every report as the protocol requires
    interval_s: float = Field(default=300.0, gt=0)  # the RTU's report interval; silence past it counts

    @model_validator(mode="after")
    def _transport(self) -> "Sl651Device":
        if self.transport == "serial" and not self.port:
            raise ValueError("transport serial needs 'port'")
        if self.transport == "tcp" and not self.listen_port:
            raise ValueError("transport tcp needs 'listen_port'")
        return self

    def values(self) -> list[Any]:
        return list(self.elements.values())


DEVICES = (Sl651Device,)
