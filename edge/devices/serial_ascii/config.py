"""Line-oriented serial instruments: each line parsed by a regex's named groups or split by a delimiter."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from edge.devices.base import QUANTITY, Checks, DeviceBase, SerialLine


class AsciiField(Checks):
    quantity: str = Field(pattern=QUANTITY)
    key: str | int  # regex: the named group; delimiter: the 0-based column
    unit: str = ""
    sensor: str = ""
    scale: float = 1.0
    offset: float = 0.0


class SerialAsciiDevice(DeviceBase, SerialLine):
    """A line-oriented instrument: each line parsed by ``pattern`` (named groups) or ``delimiter``."""

    type: Literal["serial_ascii"]
    request: str | None = None  # sent each poll (e.g. "R\r\n"); None: the instrument streams lines by itself
    pattern: str | None = None
    delimiter: str | None = None
    encoding: str = "ascii"
    # a longer line (a stuck transmitter, a baud-rate mismatch: no newline for ever) is discarded and counted
    max_line_bytes: int = Field(default=4096, ge=16, le=1_048_576)
    fields: list[AsciiField] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_parser(self) -> "SerialAsciiDevice":
        if (self.pattern is None) == (self.delimiter is None):
            raise ValueError("give exactly one of 'pattern' (a regex with named groups) or 'delimiter'")
        return self

    def values(self) -> list[Any]:
        return list(self.fields)


DEVICES = (SerialAsciiDevice,)
