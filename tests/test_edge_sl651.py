"""SL 651-2014: frames parsed and CRC-checked, reports answered, garbage counted — over a pty and over TCP."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta, timezone

import pytest
from conftest import wait_for
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import free_port

from edge.devices import make_reader
from edge.devices.reader import REJECTED, ReaderContext
from edge.devices.sl651.config import Sl651Device
from edge.devices.sl651.frame import (
    ADDED,
    EOT,
    HOURLY,
    TIMED,
    Deframer,
    Frame,
    FrameError,
    crc16,
    decode,
    element,
    parse_report,
    reply_to,
    report_body,
    series,
)
from simulators.devices import Fault, simulate_device
from simulators.devices.values import Constant, Manual
from yujing.clock import Clock

T = datetime(2026, 7, 14, 3, 5, tzinfo=timezone.utc)  # 11:05 Beijing time


def test_crc_is_crc16_modbus():
    assert crc16(b"123456789") == 0x4B37  # the CRC-16/MODBUS check value


def test_a_timed_report_round_trips_with_beijing_times_and_bcd_elements():
    body = report_body(7, T, "0012345678", 0x50, T, [element(0x20, 12.5, 3, 1), element(0x26, 345.5, 3, 1),
                                                      element(0x39, -1.234, 4, 3), element(0x1A, None, 3, 1)])
    raw = Frame("0012345678", TIMED, body).encode()
    assert raw[:3] == b"\x7e\x7e\x01" and raw[3:8] == bytes.fromhex("0012345678")
    assert raw[16:22] == bytes.fromhex("260714110500")  # send time in Beijing time, BCD
    rep = parse_report(decode(raw).body)
    assert (rep.serial, rep.station, rep.station_type, rep.observed_at) == (7, "0012345678", 0x50, T)
    assert rep.elements == {0x20: 12.5, 0x26: 345.5, 0x39: -1.234, 0x1A: None}


def test_the_reply_echoes_station_function_and_serial_with_the_direction_bit_set():
    up = decode(Frame("0012345678", ADDED, report_body(513, T, "0012345678", 0x50, T, [])).encode())
    down = reply_to(up, 513, T).encode()
    assert down[2:7] == bytes.fromhex("0012345678") and down[7] == 1  # station first, then centre
    assert down[10] == ADDED and down[11] >> 4 == 8 and down[14:16] == (513).to_bytes(2, "big")
    assert down[-3] == EOT and decode(down).upward is False


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "crc"),
    (lambda raw: raw[:11] + b"\x00\x05" + raw[13:], "length"),
    (lambda raw: b"\x7e\x7e" + b"\x00" * 3, "short"),
])
def test_malformed_frames_are_rejected_with_a_reason(mutate, reason):
    raw = Frame("0012345678", TIMED, report_body(1, T, "0012345678", 0x50, T, [])).encode()
    with pytest.raises(FrameError) as err:
        decode(mutate(raw))
    assert err.value.reason == reason


def test_the_deframer_resynchronises_after_junk_and_split_frames():
    raw = Frame("0012345678", TIMED, report_body(1, T, "0012345678", 0x50, T, [])).encode()
    d = Deframer()
    out = d.feed(b"\x00\xffjunk" + raw[:9]) + d.feed(raw[9:] + raw[:-1] + b"\x00" + raw)
    frames = [x for x in out if isinstance(x, Frame)]
    errors = [x.reason for x in out if isinstance(x, FrameError)]
    assert len(frames) == 2 and "junk" in errors and "crc" in errors


def rtu(transport: str, tmp_path, **kw) -> Sl651Device:
    where = {"port": str(tmp_path / "ttySL651")} if transport == "serial" else {"listen_port": free_port()}
    return Sl651Device.model_validate({"id": "sl-1", "type": "sl651", "site": "S", "station": "0012345678",
                                       "transport": transport, "interval_s": 0.2, **where, **kw})


@pytest.mark.parametrize("transport", ["serial", "tcp"])
async def test_rtu_reports_become_rain_and_level_samples_and_every_report_is_answered(transport, tmp_path):
    dev = rtu(transport, tmp_path)
    clock = Clock()
    level = Manual(123.456)
    sources = {"rain_mm": Constant(2.5), "rain_count_mm": Constant(88.5), "level_m": level}
    reader = make_reader(dev, ReaderContext(clock))
    got = []
    async with contextlib.AsyncExitStack() as stack:
        # serial: the RTU's line must exist before the gateway opens it; tcp: the gateway listens, the RTU dials
        if transport == "tcp":
            await stack.enter_async_context(reader)
        sims = await stack.enter_async_context(simulate_device(dev, sources, clock))
        if transport == "serial":
            await stack.enter_async_context(reader)
        sim = sims.sim()
        if True:
            async for samples in reader.samples():
                got.append({s.quantity: s.value for s in samples})
                if len(got) == 1:
                    level.set(124.0)
                if len(got) == 3:
                    break
            await wait_for(lambda: len(sim.replies) >= 3, 5, "three replies at the RTU")
    assert got[0] == {"rain_mm": 2.5, "rain_count_mm": 88.5, "level_m": 123.456}
    assert got[-1]["level_m"] == 124.0
    assert [f.body[:2] for f in sim.replies[:3]] == [(i).to_bytes(2, "big") for i in (1, 2, 3)]
    assert all(not f.upward and f.station == "0012345678" for f in sim.replies)


async def test_garbled_and_foreign_frames_are_counted_and_logged_and_the_link_keeps_working(tmp_path, caplog):
    dev = rtu("serial", tmp_path, interval_s=3600)
    clock = Clock()
    reader = make_reader(dev, ReaderContext(clock))
    before = REJECTED.labels("sl-1", "crc")._value.get()
    async with simulate_device(dev, {"level_m": Constant(5.0)}, clock) as sims:
        async with reader:
            sim = sims.sim()
            await sims.fault(Fault.GARBLED)
            await sim.report_now()
            await sim.send(b"\x00garbage\x7e")
            other = Frame("9999999999", TIMED, report_body(1, T, "9999999999", 0x50, T, [])).encode()
            await sim.send(other)
            await sims.fault(Fault.NONE)
            await sim.report_now()
            samples = await asyncio.wait_for(anext(reader.samples()), 5)
    assert [(s.quantity, s.value) for s in samples] == [("level_m", 5.0)]
    assert REJECTED.labels("sl-1", "crc")._value.get() == before + 1
    assert reader.rejected >= 3  # crc, junk, station
    assert "SL651 frame rejected" in caplog.text


async def test_several_rtus_dialling_in_to_one_port_each_reach_their_own_device(tmp_path):
    port = free_port()
    devs = [Sl651Device.model_validate({"id": f"sl-{i}", "type": "sl651", "site": "S", "station": f"00123456{i:02d}",
                                        "transport": "tcp", "listen_port": port, "interval_s": 0.1})
            for i in (1, 2)]
    clock, ctx = Clock(), ReaderContext(Clock())
    readers = [make_reader(d, ctx) for d in devs]
    async with contextlib.AsyncExitStack() as stack:
        for r in readers:
            await stack.enter_async_context(r)
        for i, d in enumerate(devs, 1):
            await stack.enter_async_context(simulate_device(d, {"level_m": Constant(float(i))}, clock))
        firsts = [await asyncio.wait_for(anext(r.samples()), 5) for r in readers]
    assert [[s.value for s in f] for f in firsts] == [[1.0], [2.0]]


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_crash_the_deframer_and_a_following_good_frame_still_parses(junk, chunk):
    good = Frame("0012345678", TIMED, report_body(9, T, "0012345678", 0x50, T, [element(0x39, 1.5, 4, 3)])).encode()
    d = Deframer()
    stream = junk + good + good
    out = [x for i in range(0, len(stream), chunk) for x in d.feed(stream[i:i + chunk])]
    assert all(isinstance(x, (Frame, FrameError)) for x in out)
    assert any(isinstance(x, Frame) and x.body == decode(good).body for x in out)


@given(st.binary(max_size=120))
@settings(max_examples=300, deadline=None)
def test_random_report_bodies_raise_only_frame_errors(body):
    try:
        parse_report(body)
    except FrameError:
        pass


@given(st.floats(min_value=-9999.999, max_value=99999.999, allow_nan=False), st.integers(min_value=0, max_value=3))
def test_element_values_round_trip_through_bcd(value, decimals):
    v = round(value, decimals)
    rep = parse_report(report_body(1, T, "0012345678", 0x50, T, [element(0x39, v, 5, decimals)]))
    assert rep.elements[0x39] == pytest.approx(v, abs=10 ** -decimals / 2)


async def test_an_hourly_reports_five_minute_rainfalls_become_twelve_readings_ending_at_the_observation(tmp_path):
    dev = rtu("serial", tmp_path, interval_s=3600,
              elements={"F4": {"quantity": "rain_mm", "unit": "mm"}, "26": {"quantity": "rain_count_mm"}})
    clock = Clock()
    fives = [0.0, 0.5, 1.0, None, 2.5, 0, 0, 0, 0, 0, 0, 12.5]
    body = report_body(3, T, "0012345678", 0x50, T, [series(0xF4, fives), element(0x26, 101.5, 3, 1)])
    async with simulate_device(dev, {}, clock) as sims:
        async with make_reader(dev, ReaderContext(clock)) as reader:
            await sims.sim().send(Frame("0012345678", HOURLY, body).encode())
            samples = await asyncio.wait_for(anext(reader.samples()), 5)
    rain = [(s.ts, s.value) for s in samples if s.quantity == "rain_mm"]
    assert len(rain) == 11 and rain[-1] == (T, 12.5) and rain[0] == (T - timedelta(minutes=55), 0.0)
    assert [s.value for s in samples if s.quantity == "rain_count_mm"] == [101.5]
