"""MQTT sources: third-party sensors and forest-fire cameras publishing JSON, mapped to readings by config.

Each field picks messages by ``match`` (dotted path → expected value),
takes its ``value`` and ``meta`` from dotted paths, and the reading's time
from ``ts`` when the device sends one. A payload that is not JSON, or lacks
a configured path, is counted and logged, never fatal. Silence is normal: a
camera that sees no fire says nothing.

Example: mqtt.example.yaml beside this module.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import aiomqtt

from edge.devices.mqtt.config import MqttSourceDevice
from edge.devices.reader import ReaderContext, Sample
from yujing.config.mqtt import MqttConfig
from yujing.errors import DeviceError, PayloadError
from yujing.log import Limiter
from yujing.mqtt import client as mqtt_client

log = logging.getLogger("yujing.edge.mqtt_source")
_MISSING = object()


def path_get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return _MISSING
    return doc


def map_payload(device: MqttSourceDevice, payload: bytes) -> list[Sample]:
    """One message → samples (possibly none: no field matched); raises PayloadError with a reason."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError("json", f"not JSON: {exc}") from None
    ts = None
    if device.ts is not None:
        raw_ts = path_get(doc, device.ts)
        if raw_ts is not _MISSING:
            try:
                ts = datetime.fromisoformat(str(raw_ts).replace("Z", "+00:00"))
            except ValueError:
                raise PayloadError("ts", f"{device.ts} = {str(raw_ts)[:40]!r} is not ISO-8601") from None
            if ts.tzinfo is None:
                raise PayloadError("ts", f"{device.ts} = {raw_ts!r} carries no timezone")
            ts = ts.astimezone(timezone.utc)
    out = []
    for f in device.fields:
        if any(str(path_get(doc, p)) != v for p, v in f.match.items()):
            continue
        raw = path_get(doc, f.value)
        if raw is _MISSING:
            raise PayloadError("field", f"no {f.value!r} in the message")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise PayloadError("value", f"{f.value} = {str(raw)[:20]!r} is not a number") from None
        meta = {k: str(v) for k, p in f.meta.items() if (v := path_get(doc, p)) is not _MISSING}
        out.append(Sample(f.quantity, value, f.unit, f.sensor, ts=ts, meta=meta, checks=f))
    return out


class MqttSourceReader:
    def __init__(self, device: MqttSourceDevice, ctx: ReaderContext) -> None:
        self.ctx = ctx
        self.device = device
        b = device.broker
        cfg: MqttConfig = (ctx.mqtt or MqttConfig()) if b is None else MqttConfig(
            host=b.host, port=b.port, username=b.username, password=b.password)
        self.client = mqtt_client(cfg, f"yujing-edge-src-{device.id}")
        self.limiter = Limiter(60.0)
        self.rejected = 0

    async def __aenter__(self) -> "MqttSourceReader":
        try:
            await self.client.__aenter__()
            await self.client.subscribe(self.device.topic, qos=1)
        except aiomqtt.MqttError as exc:
            raise DeviceError(self.device.id, f"MQTT source: {exc}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.client.__aexit__(None, None, None)
        except aiomqtt.MqttError:
            pass

    async def samples(self) -> AsyncIterator[list[Sample]]:
        try:
            async for msg in self.client.messages:
                try:
                    yield map_payload(self.device, msg.payload if isinstance(msg.payload, bytes)
                                      else str(msg.payload).encode())
                except PayloadError as exc:
                    self.rejected += 1
                    self.ctx.reject(self.device.id, exc.reason)
                    if self.limiter.allow(exc.reason):
                        log.warning("MQTT source payload rejected", extra={"kv": {
                            "device": self.device.id, "topic": str(msg.topic), "error": str(exc),
                            "suppressed": self.limiter.take_suppressed(exc.reason)}})
        except aiomqtt.MqttError as exc:
            raise DeviceError(self.device.id, f"MQTT source lost: {exc}") from None


READERS = {"mqtt": MqttSourceReader}
