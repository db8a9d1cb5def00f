"""The reader interface every device kind implements (edge/devices/<kind>/reader.py), and what readers share.

A reader is an async context manager (open the connection on enter, close on
exit) and either *polled* — ``await reader.read()`` returns the samples of one
poll — or *push* — ``async for samples in reader.samples()`` yields what the
device sends by itself (SL651 RTUs, MQTT sources, streaming instruments); a
reader without ``read`` is push. Readers know nothing about MQTT, the outbox or
quality rules; the poller (edge/poller.py) turns samples into readings. For a
polled reader the poller also owns failure: an enter or a read that raises is a
failed poll, retried at the next slot, and reported as one comm-error reading
per value the device's config lists (``values()``), so a kind has nothing to
declare for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Protocol, runtime_checkable

from prometheus_client import Counter

from yujing.model import Quality

REJECTED = Counter("yujing_edge_frames_rejected_total", "Device frames, lines or payloads rejected",
                   ["device", "reason"])


@dataclass(frozen=True, slots=True)
class Sample:
    """One value as a reader saw it; ``ts`` is the device's own time when it has one."""

    quantity: str
    value: float
    unit: str = ""
    sensor: str = ""  # suffix to the device id ("" = the device itself)
    ts: datetime | None = None
    quality: Quality = Quality.OK
    meta: dict[str, str] = field(default_factory=dict)
    checks: Any = None  # the config item carrying min/max/stuck_after, if any


class Reader(Protocol):
    async def __aenter__(self) -> "Reader": ...
    async def __aexit__(self, *exc: object) -> None: ...


@runtime_checkable
class PolledReader(Reader, Protocol):
    async def read(self) -> list[Sample]: ...


Factory = Callable[..., Reader]  # (device_cfg, ctx: ReaderContext) -> Reader; a kind lists its own in READERS


@dataclass
class ReaderContext:
    """What a reader may need beyond its own config: the clock, the uplink broker, shared buses."""

    clock: Any
    mqtt: Any = None  # yujing.config.mqtt.MqttConfig of the deployment
    shared: dict[Any, Any] = field(default_factory=dict)  # per-gateway shared resources (RS-485 buses)
    # device id → reason → frames, lines or payloads refused; the gateway's heartbeat reports these, so
    # they must be the very counts the Prometheus counter got (one place counts both)
    rejects: dict[str, dict[str, int]] = field(default_factory=dict)

    def reject(self, device: str, reason: str) -> None:
        """Count one refused frame, line or payload of ``device`` (a device id, or ``sl651:<port>`` for a
        listener's frames that reach no device)."""
        REJECTED.labels(device, reason).inc()
        tally = self.rejects.setdefault(device, {})
        tally[reason] = tally.get(reason, 0) + 1
