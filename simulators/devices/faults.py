"""Faults a simulated device can be told to show, for tests and drills."""

from __future__ import annotations

import enum


class Fault(enum.StrEnum):
    NONE = "none"
    HANG = "hang"  # keeps the link up, never answers
    GARBLED = "garbled"  # answers with corrupt frames (bad CRC, wrong length, junk)
    OFFLINE = "offline"  # the link goes away (port closed, connection refused)


def source_key(quantity: str, sensor: str = "") -> str:
    """How a value source is named for one value of a device: ``level_m`` or ``tilt_deg.x``."""
    return f"{quantity}.{sensor}" if sensor else quantity
