"""Per-device health as the centre sees it: ok, degraded (answers with trouble) or offline."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from datetime import datetime


class DeviceState(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # answered after retries, or answered with flagged values, or failing but not yet offline
    OFFLINE = "offline"  # ``offline_after`` polls in a row failed (or a push device fell silent that long)


@dataclass
class DeviceStatus:
    device: str
    state: DeviceState = DeviceState.DEGRADED  # nothing heard yet
    since: datetime | None = None
    last_ok: datetime | None = None
    failures: int = 0  # consecutive failed polls
    polls: int = 0
    errors: int = 0  # failed polls, total
    error: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def set(self, state: DeviceState, now: datetime, error: str = "") -> None:
        if state is not self.state or self.since is None:
            self.state = state
            self.since = now
            self.changed.set()
        self.error = error

    def as_json(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "since": self.since.isoformat() if self.since else None,
            "last_ok": self.last_ok.isoformat() if self.last_ok else None,
            "failures": self.failures,
            "polls": self.polls,
            "errors": self.errors,
            "error": self.error,
        }
