"""Serial ASCII instruments on a pty and MQTT sources on Mosquitto: parsed, flagged, garbage counted."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import pytest
from conftest import wait_for

from edge.devices import make_reader
from edge.devices.mqtt.config import MqttSourceDevice
from edge.devices.mqtt.reader import map_payload
from edge.devices.reader import ReaderContext
from edge.devices.serial_ascii.config import SerialAsciiDevice
from edge.devices.serial_ascii.reader import parse_line
from simulators.devices import Fault, simulate_device
from simulators.devices.values import Constant, Manual
from yujing.clock import Clock
from yujing.config.mqtt import MqttConfig
from yujing.errors import DeviceError, PayloadError

RADAR = {"id": "radar", "type": "serial_ascii", "site": "S", "request": "R\r\n", "timeout_s": 0.5,
         "pattern": r"L=(?P<level>[-0-9.]+)m\s+T=(?P<temp>[-0-9.]+)C",
         "fields": [{"key": "level", "quantity": "level_m", "unit": "m", "min": 0, "max": 40},
                    {"key": "temp", "quantity": "temperature_c"}]}
CSV = {"id": "crk", "type": "serial_ascii", "site": "S", "delimiter": ",", "interval_s": 0.05,
       "fields": [{"key": 2, "quantity": "displacement_mm", "unit": "mm", "scale": 0.1}]}
CAMERA = {"id": "cam-1", "type": "mqtt", "site": "F", "topic": "cams/cam-1", "ts": "ts", "fields": [
    {"quantity": "smoke_confidence", "value": "confidence", "match": {"type": "smoke"},
     "meta": {"camera": "camera", "bearing_deg": "bearing_deg", "snapshot": "snapshot"}},
    {"quantity": "flame_confidence", "value": "confidence", "match": {"type": "flame"}}]}


@pytest.mark.parametrize(("line", "want"), [
    ("L=12.345m T=20.1C\r\n", [("level_m", 12.345), ("temperature_c", 20.1)]),
    ("noise L=-0.5m  T=3C", [("level_m", -0.5), ("temperature_c", 3.0)]),
])
def test_regex_lines_parse_into_samples(line, want):
    dev = SerialAsciiDevice.model_validate(RADAR | {"port": "/dev/null"})
    assert [(s.quantity, s.value) for s in parse_line(dev, line)] == want


@pytest.mark.parametrize(("line", "reason"), [("L=abc", "parse"), ("L=1.2.3m T=1C", "value")])
def test_lines_that_do_not_fit_raise_a_payload_error_with_a_reason(line, reason):
    dev = SerialAsciiDevice.model_validate(RADAR | {"port": "/dev/null"})
    with pytest.raises(PayloadError) as err:
        parse_line(dev, line)
    assert err.value.reason == reason


def test_delimited_lines_take_columns_with_scale():
    dev = SerialAsciiDevice.model_validate(CSV | {"port": "/dev/null"})
    assert [(s.quantity, s.value) for s in parse_line(dev, "CRK,001,123,25.1")] == [("displacement_mm", 12.3)]


async def test_a_polled_gauge_answers_its_request_on_a_pty_and_a_silent_one_times_out(tmp_path):
    dev = SerialAsciiDevice.model_validate(RADAR | {"port": str(tmp_path / "ttyUSB0")})
    clock, level = Clock(), Manual(12.5)
    async with simulate_device(dev, {"level_m": level, "temperature_c": Constant(20)}, clock) as sims:
        async with make_reader(dev, ReaderContext(clock)) as reader:
            assert [(s.quantity, s.value) for s in await reader.read()] == [("level_m", 12.5), ("temperature_c", 20)]
            level.set(13.25)
            assert (await reader.read())[0].value == 13.25
            await sims.fault(Fault.HANG)
            with pytest.raises(DeviceError, match="no answer"):
                await reader.read()
            await sims.fault(Fault.GARBLED)
            with pytest.raises(PayloadError):
                await reader.read()
            await sims.fault(Fault.NONE)
            assert (await reader.read())[0].value == 13.25
            assert reader.rejected == 1


async def test_a_streaming_instrument_yields_each_line_and_skips_garbage(tmp_path):
    dev = SerialAsciiDevice.model_validate(CSV | {"port": str(tmp_path / "ttyUSB1")})
    clock = Clock()
    async with simulate_device(dev, {"displacement_mm": Constant(4.2)}, clock) as sims:
        async with make_reader(dev, ReaderContext(clock)) as reader:
            sims.sim().send_raw(b"garbage line\r\n")
            it = reader.samples()
            first = await asyncio.wait_for(anext(it), 5)
            assert [(s.quantity, s.value) for s in first] == [("displacement_mm", pytest.approx(4.2))]
            assert reader.rejected == 1


def test_camera_detections_map_to_smoke_and_flame_with_bearing_snapshot_and_the_cameras_time():
    dev = MqttSourceDevice.model_validate(CAMERA)
    msg = {"camera": "cam-1", "type": "smoke", "confidence": 0.82, "bearing_deg": 131.5, "snapshot": "s/1.jpg",
           "ts": "2026-07-14T11:05:00+08:00"}
    [s] = map_payload(dev, json.dumps(msg).encode())
    assert (s.quantity, s.value, s.ts) == ("smoke_confidence", 0.82, datetime(2026, 7, 14, 3, 5, tzinfo=timezone.utc))
    assert s.meta == {"camera": "cam-1", "bearing_deg": "131.5", "snapshot": "s/1.jpg"}
    assert map_payload(dev, json.dumps(msg | {"type": "cloud"}).encode()) == []


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "json"), (b'{"type": "smoke"}', "field"), (b'{"type": "smoke", "confidence": "high"}', "value"),
    (b'{"type": "smoke", "confidence": 1, "ts": "yesterday"}', "ts"),
    (b'{"type": "smoke", "confidence": 1, "ts": "2026-07-14T03:05:00"}', "ts"),
])
def test_bad_mqtt_payloads_raise_a_payload_error_with_a_reason(payload, reason):
    with pytest.raises(PayloadError) as err:
        map_payload(MqttSourceDevice.model_validate(CAMERA), payload)
    assert err.value.reason == reason


async def test_a_camera_on_mosquitto_reaches_the_reader_and_garbled_payloads_are_counted_not_fatal(mosquitto, prefix):
    dev = MqttSourceDevice.model_validate(CAMERA | {"topic": f"{prefix}/cams/cam-1", "interval_s": 0.05})
    mqtt = MqttConfig(port=mosquitto.port)
    clock, smoke = Clock(), Manual(0.0)
    async with make_reader(dev, ReaderContext(clock, mqtt)) as reader:
        async with simulate_device(dev, {"smoke_confidence": smoke, "bearing_deg": Constant(131.5)}, clock,
                                   mqtt) as sims:
            got: list = []

            async def take() -> None:
                async for samples in reader.samples():
                    got.append(samples)

            task = asyncio.create_task(take())
            await sims.fault(Fault.GARBLED)
            smoke.set(0.9)
            await wait_for(lambda: reader.rejected >= 2, 5, "garbled payloads counted")
            assert not got and not task.done()
            await sims.fault(Fault.NONE)
            await wait_for(lambda: got, 5, "a detection after the camera heals")
            task.cancel()
    assert [(s.quantity, s.value, s.meta["bearing_deg"]) for s in got[0]] == [("smoke_confidence", 0.9, "131.5")]
