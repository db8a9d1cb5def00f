"""What every device kind's config shares: the common device fields, a value's checks, a serial line.

A kind's ``config.py`` builds its model on :class:`DeviceBase` with ``type: Literal["<kind>"]``; the
gateway's ``devices:`` list accepts every kind the registry (``edge/devices/__init__.py``) finds.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

ID = r"^[A-Za-z0-9_.\-]+$"
QUANTITY = r"^[a-z][a-z0-9_]*$"


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Checks(Strict):
    """What makes a value suspect: outside the sensor's physical range, or frozen for too long."""

    min: float | None = None  # the sensor's range: outside it a reading is flagged out-of-range
    max: float | None = None
    stuck_after: int | None = Field(default=None, ge=2)  # N identical values in a row: flagged stuck


class DeviceBase(Strict):
    """The fields of every device. A kind adds ``type: Literal["<kind>"]`` and its own."""

    # a push device that says nothing when nothing happens (a fire camera that sees no fire): its silence
    # is no fault, so neither the gateway nor the rules' equipment watch call it offline for being quiet
    silence_is_normal: ClassVar[bool] = False

    id: str = Field(min_length=1, max_length=64, pattern=ID)
    site: str
    interval_s: float = Field(default=60.0, gt=0)  # poll interval (polled kinds) / expected report interval (push)
    timeout_s: float = Field(default=3.0, gt=0)  # one request/response
    retries: int = Field(default=2, ge=0, le=10)  # extra attempts within one poll, with backoff
    backoff_s: float = Field(default=0.5, ge=0)  # first retry delay; doubles each retry
    offline_after: int = Field(default=3, ge=1)  # consecutive failed polls (or silent intervals) before offline

    def values(self) -> list[Any]:
        """What the device reports, one item per value (each with ``quantity``, ``unit``, ``min``/``max``,
        maybe ``sensor``): its register map, fields or elements. Simulators and checks read it."""
        return []


class SerialLine(Strict):
    port: str  # device path, e.g. /dev/ttyS1 or /dev/serial/by-id/...
    baudrate: int = 9600
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
