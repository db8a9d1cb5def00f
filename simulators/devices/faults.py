"""Faults a simulated device can be told to show, for tests and drills."""

from __future__ import annotations

import enum


class Fault(enum.StrEnum):
    NONE = "none"
    HANG = "hang"  # keeps the link up, never answers
    GARBLED = "garbled"  # answers with corrupt frames (bad CRC, wrong length, junk)
    OFFLINE = "offline"  # the link goes away (port closed, connection refused)


class GoesOffline:
    """``set_fault`` for a simulator whose link can be taken down (``_stop``) and brought back (``_start``)."""

    fault: Fault

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    async def set_fault(self, device_id: str, fault: Fault) -> None:
        was, self.fault = self.fault, fault
        if fault is Fault.OFFLINE and was is not Fault.OFFLINE:
            await self._stop()
        elif was is Fault.OFFLINE and fault is not Fault.OFFLINE:
            await self._start()


def source_key(quantity: str, sensor: str = "") -> str:
    """How a value source is named for one value of a device: ``level_m`` or ``tilt_deg.x``."""
    return f"{quantity}.{sensor}" if sensor else quantity
