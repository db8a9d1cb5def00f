"""Simulated MQTT devices: forest-fire cameras (detection events) and plain JSON sensors.

The message shape is derived from the device's own config, so any mapping
the agent accepts can be simulated: fields with a ``match`` are *events*
(one message each, only while the source is above 0 — a camera that sees no
fire is silent); fields without one are *measurements*, published together
every ``interval_s``. A camera's detection message looks like::

    {"camera": "cam-01", "type": "smoke", "confidence": 0.82, "bearing_deg": 131.5,
     "snapshot": "snap/cam-01/20260714T030500Z.jpg", "ts": "2026-07-14T03:05:00+00:00"}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import zlib
from typing import TYPE_CHECKING, Any

import aiomqtt

from simulators.devices.faults import Fault, source_key
from simulators.devices.place import Place
from simulators.devices.values import Constant, ValueSource

if TYPE_CHECKING:
    from simulators.scenario import Scenario


def _put(doc: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        doc = doc.setdefault(p, {})
    doc[parts[-1]] = value


class MqttDeviceSim:
    def __init__(self, device: Any, sources: dict[str, ValueSource], clock: Any, mqtt: Any = None) -> None:
        self.device = device
        self.sources = sources
        self.clock = clock
        self.fault = Fault.NONE
        b = device.broker or mqtt
        self.host, self.port = (b.host, b.port) if b is not None else ("127.0.0.1", 1883)
        self.published = 0
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task | None = None

    def _meta_value(self, key: str, now: Any) -> Any:
        if key == "camera":
            return self.device.id
        if key == "snapshot":
            return f"snap/{self.device.id}/{now:%Y%m%dT%H%M%SZ}.jpg"
        src = self.sources.get(key)
        return round(src.value(now), 3) if src else ""

    def messages(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        events, measurement = [], {}
        for f in self.device.fields:
            src = self.sources.get(source_key(f.quantity, f.sensor)) or self.sources.get(f.quantity)
            v = src.value(now) if src else 0.0
            doc: dict[str, Any] = {}
            target = doc if f.match else measurement
            _put(target, f.value, round(v, 6))
            for path, want in f.match.items():
                _put(target, path, want)
            for key, path in f.meta.items():
                _put(target, path, self._meta_value(key, now))
            if f.match and v > 0:
                events.append(doc)
        for doc in events + ([measurement] if measurement else []):
            if self.device.ts:
                _put(doc, self.device.ts, now.isoformat())
        return events + ([measurement] if measurement else [])

    async def publish_now(self) -> None:
        assert self._client is not None
        for doc in self.messages():
            payload = b"{not json" if self.fault is Fault.GARBLED else json.dumps(doc).encode()
            await self._client.publish(self.device.topic, payload, qos=1)
            self.published += 1

    async def send_raw(self, payload: bytes) -> None:
        assert self._client is not None
        await self._client.publish(self.device.topic, payload, qos=1)

    async def _loop(self) -> None:
        while True:
            await self.clock.sleep(self.device.interval_s)
            if self.fault in (Fault.NONE, Fault.GARBLED):
                with contextlib.suppress(aiomqtt.MqttError):
                    await self.publish_now()

    async def set_fault(self, device_id: str, fault: Fault) -> None:
        self.fault = fault

    async def __aenter__(self) -> "MqttDeviceSim":
        # a random tail: the same camera simulated by a drill beside the demo must not take the demo's over
        self._client = aiomqtt.Client(self.host, self.port,
                                      identifier=f"sim-mqtt-{self.device.id}-{secrets.token_hex(3)}")
        await self._client.__aenter__()
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # let it finish; our own cancellation still propagates
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)



def simulate(devices: list[Any], sources: dict[str, dict[str, ValueSource]], clock: Any,
             mqtt: Any = None) -> dict[str, MqttDeviceSim]:
    """``mqtt``: the deployment's broker, where a device without a ``broker`` of its own publishes."""
    return {d.id: MqttDeviceSim(d, sources.get(d.id, {}), clock, mqtt) for d in devices}


def relocate(dev: Any, place: Place) -> Any:
    """Topics under the place's prefix. A device with a broker of its own publishes to the place's broker,
    or (a place without one) to the deployment's, never to the vendor's."""
    update: dict[str, Any] = {"topic": place.topic(dev.topic)}
    if dev.broker is not None:  # without the vendor's credentials: they are not the place's
        update["broker"] = type(dev.broker)(host=place.broker[0], port=place.broker[1]) if place.broker else None
    return dev.model_copy(update=update)


def scenario_sources(dev: Any, scn: Scenario, t0: Any) -> dict[str, ValueSource]:
    """A camera's bearing to what it sees: the scenario's fire, else a fixed one of its own."""
    fire = next((f for f in scn.fire if dev.id in f.cameras), None)
    bearing = fire.bearing_deg if fire and fire.bearing_deg is not None else zlib.crc32(dev.id.encode()) % 360
    return {"bearing_deg": Constant(float(bearing))}
