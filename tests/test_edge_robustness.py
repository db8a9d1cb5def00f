"""Edge robustness: overlong serial lines, SL651 listeners shared by several devices, bad frames counted once,
frames and multi-packet reports cut off by a dropped link, SL651-2014 multi-packet (SYN/ETB) reports
joined — and the gateway heartbeat's per-device counts equal to what was refused.

SL651 frames here are built by hand from the standard's layout (HEX/BCD frame, M3 packet field, CRC-16/MODBUS
written again below), not with the module under test."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime, timedelta, timezone

import aiomqtt
import pytest
from conftest import wait_for
from servers import free_port

from edge.devices import make_reader
from edge.devices.reader import REJECTED, ReaderContext
from edge.devices.serial_ascii.config import SerialAsciiDevice
from edge.devices.sl651.config import Sl651Device
from edge.devices.sl651.frame import Deframer, FrameError
from edge.service import serve
from simulators.devices import Fault, simulate_device, simulate_devices
from testing.devices import deployment
from simulators.devices.values import Constant
from yujing import topics
from yujing.clock import Clock
from yujing.errors import DeviceError, PayloadError
from yujing.runtime import Runtime

STATION = "0012345678"
OBSERVED = datetime(2026, 7, 14, 3, 5, tzinfo=timezone.utc)  # 11:05 Beijing time


# --- frames by hand (SL 651-2014, HEX/BCD) ----------------------------------------------------------

def crc_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: init FFFF, reflected polynomial 8005 (A001), no final xor."""
    crc = 0xFFFF
    for byte in data:
        for bit in range(8):
            mix = (crc ^ (byte >> bit)) & 1
            crc >>= 1
            if mix:
                crc ^= 0xA001
    return crc


def test_the_hand_crc_gives_the_check_value():
    assert crc_modbus(b"123456789") == 0x4B37


def hand_frame(body: bytes, function: int = 0x32, station: str = STATION, packet: tuple[int, int] | None = None,
               end: int = 0x03) -> bytes:
    """7E7E · centre 01 · station (5 BCD) · password 0000 · function · 0 (up) + 12-bit length · STX/SYN ·
    [count << 12 | number, 3 bytes] · body · end · CRC high byte first."""
    m3 = b"" if packet is None else ((packet[0] << 12) | packet[1]).to_bytes(3, "big")
    length = len(m3) + len(body)
    raw = (b"\x7e\x7e\x01" + bytes.fromhex(station) + b"\x00\x00" + bytes([function])
           + length.to_bytes(2, "big") + (b"\x16" if m3 else b"\x02") + m3 + body + bytes([end]))
    return raw + crc_modbus(raw).to_bytes(2, "big")


def bcd_time(t: datetime, fmt: str) -> bytes:
    return bytes.fromhex(t.astimezone(timezone(timedelta(hours=8))).strftime(fmt))


def hand_body(serial: int, level_digits: str = "00123456", rain_digits: str = "000025") -> bytes:
    """serial · send time (YYMMDDhhmmss) · F1F1 station + type 48 (river) · F0F0 observed (YYMMDDhhmm) ·
    element 39 (level, 4 bytes, 3 decimals: 0x23) · element 20 (rain, 3 bytes, 1 decimal: 0x19)."""
    return (serial.to_bytes(2, "big") + bcd_time(OBSERVED, "%y%m%d%H%M%S") + b"\xf1\xf1" + bytes.fromhex(STATION)
            + b"\x48" + b"\xf0\xf0" + bcd_time(OBSERVED, "%y%m%d%H%M")
            + b"\x39\x23" + bytes.fromhex(level_digits) + b"\x20\x19" + bytes.fromhex(rain_digits))


def packets(body: bytes, cuts: list[int]) -> list[bytes]:
    parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    n = len(parts)
    return [hand_frame(p, packet=(n, i), end=0x03 if i == n else 0x17) for i, p in enumerate(parts, 1)]


def tcp_rtu(port: int, device_id: str = "sl-1", station: str = STATION) -> Sl651Device:
    return Sl651Device.model_validate({"id": device_id, "type": "sl651", "site": "S", "station": station,
                                       "transport": "tcp", "listen_port": port, "interval_s": 3600})


@contextlib.asynccontextmanager
async def listening(*devices: Sl651Device):
    ctx = ReaderContext(Clock())
    readers = [make_reader(d, ctx) for d in devices]
    async with contextlib.AsyncExitStack() as stack:
        for r in readers:
            await stack.enter_async_context(r)
        yield ctx, readers


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    """A log line carries ``text`` in its message or its key-values (what the JSON log prints)."""
    return any(text in r.getMessage() or text in str(getattr(r, "kv", "")) for r in caplog.records)


async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


# --- multi-packet reports ------------------------------------------------------------------------------

@pytest.mark.parametrize(("cuts", "order"), [
    ([10], [1, 2]),                      # two packets, cut inside the send time
    ([12, 25], [1, 2, 3]),               # three, one cut inside the station address
    ([5, 20, 30], [1, 2, 2, 3, 4]),      # a packet sent twice (the RTU repeating it)
    ([5, 20, 30], [1, 1, 2, 3, 4]),      # the first one sent twice
])
async def test_a_multi_packet_report_is_joined_read_and_answered_once(cuts, order):
    port = free_port()
    async with listening(tcp_rtu(port)) as (ctx, [reader]):
        r, w = await dial(port)
        frames = packets(hand_body(7), cuts)
        for i in order:
            w.write(frames[i - 1])
            await w.drain()
        samples = await asyncio.wait_for(anext(reader.samples()), 5)
        reply = await asyncio.wait_for(r.read(100), 5)
        w.close()
    assert sorted((s.quantity, s.value, s.ts) for s in samples) == [("level_m", 123.456, OBSERVED),
                                                                     ("rain_mm", 2.5, OBSERVED)]
    assert reply[:2] == b"\x7e\x7e" and reply[2:7] == bytes.fromhex(STATION) and reply[11] >> 4 == 8
    assert reply[14:16] == (7).to_bytes(2, "big"), "the reply names the report's serial"
    assert ctx.rejects == {}


async def test_a_multi_packet_report_a_dropped_link_cut_short_is_counted_incomplete_and_logged(caplog):
    port = free_port()
    async with listening(tcp_rtu(port)) as (ctx, [reader]):
        _, w = await dial(port)
        for f in packets(hand_body(8), [10, 20])[:2]:
            w.write(f)
        await w.drain()
        w.close()
        await wait_for(lambda: ctx.rejects.get("sl-1") == {"incomplete": 1}, 5, "the cut report counted")
        _, w = await dial(port)  # the RTU dials again and sends it whole
        for f in packets(hand_body(8), [10, 20]):
            w.write(f)
        await w.drain()
        samples = await asyncio.wait_for(anext(reader.samples()), 5)
        w.close()
    assert len(samples) == 2 and ctx.rejects == {"sl-1": {"incomplete": 1}}
    assert logged(caplog, "2 of 3 packets")


async def test_packets_of_a_report_whose_first_packet_was_lost_are_never_joined_with_the_next_report():
    port = free_port()
    async with listening(tcp_rtu(port)) as (ctx, [reader]):
        _, w = await dial(port)
        lost_first = packets(hand_body(5, level_digits="00999999"), [10, 20])[1:]  # packet 1 lost (bad CRC, say)
        for f in lost_first + packets(hand_body(6), [10, 20]):  # then the RTU sends the next report whole
            w.write(f)
        await w.drain()
        samples = await asyncio.wait_for(anext(reader.samples()), 5)
        w.close()
    assert sorted((s.quantity, s.value) for s in samples) == [("level_m", 123.456), ("rain_mm", 2.5)]
    assert ctx.rejects == {"sl-1": {"incomplete": 1}}


@pytest.mark.parametrize(("m3", "why"), [(b"\x00\x30\x00", "number 0"), (b"\x00\x20\x03", "number above count")])
def test_a_packet_numbered_outside_its_count_is_refused(m3, why):
    body = hand_body(1)
    raw = (b"\x7e\x7e\x01" + bytes.fromhex(STATION) + b"\x00\x00\x32" + (3 + len(body)).to_bytes(2, "big")
           + b"\x16" + m3 + body + b"\x17")
    raw += crc_modbus(raw).to_bytes(2, "big")
    [err] = Deframer().feed(raw)
    assert isinstance(err, FrameError) and err.reason == "packet", why


# --- bad frames counted once; frames cut off by the link ------------------------------------------

@pytest.mark.parametrize("flip", [-1, -2, -3, 20, 30])  # CRC bytes, end byte, a body byte, another
def test_one_bad_crc_frame_is_counted_once_and_the_next_frame_still_reads(flip):
    bad = bytearray(hand_frame(hand_body(1)))
    bad[flip] ^= 0x01
    out = Deframer().feed(bytes(bad) + hand_frame(hand_body(2)))
    assert [x.reason for x in out if isinstance(x, FrameError)] == ["crc"]
    assert [x.body[:2] for x in out if not isinstance(x, FrameError)] == [b"\x00\x02"]


def test_junk_around_a_bad_frame_is_still_counted_as_junk_once_each():
    bad = bytearray(hand_frame(hand_body(1)))
    bad[-1] ^= 0x01
    out = Deframer().feed(b"noise" + bytes(bad) + b"more noise" + hand_frame(hand_body(2)))
    assert [x.reason for x in out if isinstance(x, FrameError)] == ["junk", "crc", "junk"]


async def test_a_bad_crc_frame_on_a_shared_listener_counts_once_against_its_device():
    port = free_port()
    async with listening(tcp_rtu(port)) as (ctx, [reader]):
        _, w = await dial(port)
        bad = bytearray(hand_frame(hand_body(1)))
        bad[25] ^= 0x40
        w.write(bytes(bad) + hand_frame(hand_body(2)))
        await w.drain()
        await asyncio.wait_for(anext(reader.samples()), 5)
        w.close()
    assert ctx.rejects == {"sl-1": {"crc": 1}}


@pytest.mark.parametrize(("keep", "counted_as"), [(5, f"sl651:{{port}}"), (14, "sl-1"), (-3, "sl-1")])
async def test_a_frame_cut_off_by_a_dropped_link_is_counted_and_logged(keep, counted_as, caplog):
    port = free_port()
    async with listening(tcp_rtu(port)) as (ctx, _):
        before = REJECTED.labels(counted_as.format(port=port), "truncated")._value.get()
        _, w = await dial(port)
        w.write(hand_frame(hand_body(1))[:keep])  # header cut (station unknown), just the header, all but the CRC
        await w.drain()
        w.close()
        who = counted_as.format(port=port)
        await wait_for(lambda: ctx.rejects.get(who) == {"truncated": 1}, 5, "the cut frame counted")
    assert REJECTED.labels(who, "truncated")._value.get() == before + 1
    assert logged(caplog, "truncated")


# --- one listener, several devices ---------------------------------------------------------------------

async def test_devices_sharing_a_listener_start_together_without_address_in_use(caplog):
    port = free_port()
    devs = [tcp_rtu(port, f"sl-{i}", f"00123456{i:02d}") for i in range(1, 4)]
    ctx = ReaderContext(Clock())
    readers = [make_reader(d, ctx) for d in devs]
    await asyncio.gather(*(r.__aenter__() for r in readers))  # as the gateway's pollers do: at once
    try:
        listener = ctx.shared[("sl651", "127.0.0.1", port)]
        assert set(listener.readers) == {d.station for d in devs}
    finally:
        for r in readers:
            await r.__aexit__(None, None, None)


# --- overlong serial lines ---------------------------------------------------------------------------------

def streaming_crack_meter(tmp_path, max_line_bytes: int = 64) -> SerialAsciiDevice:
    return SerialAsciiDevice.model_validate({
        "id": "crk", "type": "serial_ascii", "site": "S", "delimiter": ",", "interval_s": 3600,
        "port": str(tmp_path / "ttyCRK"), "max_line_bytes": max_line_bytes,
        "fields": [{"key": 2, "quantity": "displacement_mm", "unit": "mm"}]})


def line(value: str, length: int) -> bytes:
    """A line of exactly ``length`` bytes before its newline (CR included), padded with blanks."""
    text = f"CRK,001,{value}".encode()
    return text + b" " * (length - len(text) - 1) + b"\r\n"


async def test_overlong_serial_lines_are_discarded_and_counted_and_the_reader_goes_on(tmp_path):
    dev = streaming_crack_meter(tmp_path, 64)
    clock, ctx = Clock(), ReaderContext(Clock())
    async with simulate_device(dev, {"displacement_mm": Constant(0)}, clock) as sims:
        async with make_reader(dev, ctx) as reader:
            sim = sims.sim()
            it = reader.samples()
            sim.send_raw(line("1.5", 64))  # at the limit: read
            assert [s.value for s in await asyncio.wait_for(anext(it), 5)] == [1.5]
            # the reader reads while the burst is sent: the line holds a few KB, and send_all waits on it
            nxt = asyncio.ensure_future(anext(it))
            await sim.send_all(line("2.5", 65))  # one above: discarded
            await sim.send_all(b"x" * 200_000)  # 200 KB without a newline, then its end
            await sim.send_all(b"tail of it\r\n")
            await sim.send_all(line("3.5", 63))  # just below: read
            assert [s.value for s in await asyncio.wait_for(nxt, 10)] == [3.5]
    assert ctx.rejects == {"crk": {"overlong": 2}}
    assert reader.rejected == 2


# --- the heartbeat's counts --------------------------------------------------------------------------------

async def test_the_heartbeat_counts_per_device_exactly_the_frames_and_lines_refused(mosquitto, prefix, tmp_path):
    port = free_port()
    crk = streaming_crack_meter(tmp_path, 64).model_dump(mode="json", exclude_none=True)
    sl = tcp_rtu(port).model_dump(mode="json", exclude_none=True)
    cfg = deployment(tmp_path, [{"id": "gw1", "heartbeat_s": 0.5, "devices": [crk, sl]}],
                     mqtt_port=mosquitto.port, prefix=prefix)
    rt = Runtime(cfg, Clock())
    before = {(d, r): REJECTED.labels(d, r)._value.get()
              for d, r in [("crk", "overlong"), ("crk", "parse"), ("crk", "value"), ("sl-1", "crc"),
                           ("sl-1", "truncated")]}
    status: dict = {}
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
        await sub.subscribe(topics.status(prefix), qos=1)

        async def listen() -> None:
            async for msg in sub.messages:
                status.update(json.loads(msg.payload))

        listener = asyncio.create_task(listen())
        async with simulate_devices([cfg.gateways[0].devices[0]], {"crk": {"displacement_mm": Constant(0)}},
                                    rt.clock) as sims:
            agent = asyncio.create_task(serve(rt))
            await wait_for(lambda: status.get("online") is True, 10, "the gateway online")
            sim = sims.sim("crk")
            sim.send_raw(line("4.0", 40))  # the line is open once a good line has come through
            await wait_for(lambda: status.get("devices", {}).get("crk", {}).get("state") == "ok", 10, "crk read")
            await sim.send_all(b"garbage\r\n" + b"y" * 5000 + b"\r\n" + b"CRK,001,abc\r\n" + line("4.0", 40))
            w = await dial_when_listening(port)
            bad = bytearray(hand_frame(hand_body(1)))
            bad[-1] ^= 1
            foreign = hand_frame(hand_body(9), station="0012345699")
            w.write(bytes(bad) + foreign + hand_frame(hand_body(2)) + hand_frame(hand_body(3))[:20])
            await w.drain()
            w.close()
            want = {"crk": {"parse": 1, "value": 1, "overlong": 1}, "sl-1": {"crc": 1, "truncated": 1}}
            await wait_for(lambda: {d: status.get("devices", {}).get(d, {}).get("rejected") for d in want} == want
                           and status.get("unrouted") == {f"sl651:{port}": {"station": 1}}, 10,
                           "the heartbeat's counts")
            rt.stop.set()
            await asyncio.wait_for(agent, 15)
        listener.cancel()
    for (d, r), n in before.items():
        assert REJECTED.labels(d, r)._value.get() - n == want[d].get(r, 0), (d, r)


async def dial_when_listening(port: int) -> asyncio.StreamWriter:
    async def attempt() -> asyncio.StreamWriter | None:
        try:
            return (await dial(port))[1]
        except OSError:
            return None
    for _ in range(100):
        if (w := await attempt()) is not None:
            return w
        await asyncio.sleep(0.1)  # polling a port that is not bound yet: nothing to wait on but time
    raise AssertionError(f"nothing listens on {port}")


async def test_an_overlong_answer_of_a_polled_gauge_fails_that_poll_only(tmp_path):
    dev = SerialAsciiDevice.model_validate({
        "id": "radar", "type": "serial_ascii", "site": "S", "request": "R\r\n", "timeout_s": 2,
        "port": str(tmp_path / "ttyRADAR"), "pattern": r"L=(?P<level>[-0-9.]+)m",
        "fields": [{"key": "level", "quantity": "level_m", "unit": "m"}]})
    clock, ctx = Clock(), ReaderContext(Clock())
    async with simulate_device(dev, {"level_m": Constant(12.5)}, clock) as sims:
        async with make_reader(dev, ctx) as reader:
            sim = sims.sim()
            assert [s.value for s in await reader.read()] == [12.5]
            good = sim.template
            sim.template = good + " " * 5000  # default max_line_bytes: 4096
            with pytest.raises(PayloadError, match="overlong"):
                await reader.read()
            sim.template = good
            assert [s.value for s in await reader.read()] == [12.5]
    assert ctx.rejects == {"radar": {"overlong": 1}}


async def test_a_frame_cut_off_when_the_serial_line_goes_dead_is_counted(tmp_path):
    dev = Sl651Device.model_validate({"id": "sl-1", "type": "sl651", "site": "S", "station": STATION,
                                      "transport": "serial", "port": str(tmp_path / "ttySL"), "interval_s": 3600})
    clock, ctx = Clock(), ReaderContext(Clock())
    async with simulate_device(dev, {"level_m": Constant(1.0)}, clock) as sims:
        async with make_reader(dev, ctx) as reader:
            it = reader.samples()
            await sims.sim().send(hand_frame(hand_body(1)) + hand_frame(hand_body(2))[:30])
            assert len(await asyncio.wait_for(anext(it), 5)) == 2  # the whole frame read, the cut one buffered
            await sims.fault(Fault.OFFLINE)  # the line goes dead
            with pytest.raises(DeviceError):
                await asyncio.wait_for(anext(it), 5)
    assert ctx.rejects == {"sl-1": {"truncated": 1}}
