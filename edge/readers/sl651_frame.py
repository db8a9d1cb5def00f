"""SL 651-2014 HEX/BCD frames, pure: CRC, frame codec, report bodies, the centre's reply.

Upstream frame (RTU → centre)::

    7E 7E | centre (1) | station (5, BCD) | password (2) | function (1) |
    direction+length (2: top 4 bits 0 = up, 8 = down; low 12 bits = body length) |
    STX 02 | body | ETX 03 / ETB 17 / ENQ 05 | CRC-16 (2, high byte first)

A downstream frame swaps the addresses (station first, then centre). The
CRC is CRC-16/MODBUS (init 0xFFFF, reflected poly 0xA001) over every byte
before it. Report body: serial (2) · send time (6 BCD, YYMMDDhhmmss) ·
``F1 F1`` station (5) + station type (1) · ``F0 F0`` observation time (5 BCD,
YYMMDDhhmm) · elements: id, definition (high 5 bits = bytes, low 3 bits =
decimals), BCD value (all ``FF`` = no data; a leading ``FF`` sign byte, counted in the length, = negative).
The reply layout and end codes (``EOT``: done, the RTU may hang up; ``ESC``: stay online) follow what RTU
firmware in the field expects.
Times on the wire are Beijing time (UTC+8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

BEIJING = timezone(timedelta(hours=8))
SOF = b"\x7e\x7e"
STX, SYN = 0x02, 0x16
ETX, ETB, ENQ, EOT, ESC = 0x03, 0x17, 0x05, 0x04, 0x1B
KEEPALIVE, TEST, INTERVAL, TIMED, ADDED, HOURLY = 0x2F, 0x30, 0x31, 0x32, 0x33, 0x34
REPORTS = {TEST, INTERVAL, TIMED, ADDED, HOURLY}
MAX_BODY = 4095


class FrameError(ValueError):
    """A frame that cannot be accepted; ``reason`` is a short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def bcd(digits: str) -> bytes:
    if len(digits) % 2 or not digits.isdigit():
        raise ValueError(f"BCD needs an even count of digits, got {digits!r}")
    return bytes(int(digits[i:i + 2], 16) for i in range(0, len(digits), 2))


def unbcd(raw: bytes) -> str:
    s = raw.hex()
    if not s.isdigit():
        raise FrameError("bcd", f"not BCD: {s}")
    return s


@dataclass(frozen=True)
class Frame:
    station: str  # 10 digits
    function: int
    body: bytes
    centre: int = 1
    password: int = 0
    upward: bool = True
    end: int = ETX
    start: int = STX

    def encode(self) -> bytes:
        if len(self.body) > MAX_BODY:
            raise ValueError("body too long for one frame")
        addr = (bytes([self.centre]) + bcd(self.station)) if self.upward else (bcd(self.station) + bytes([self.centre]))
        dl = (0 if self.upward else 0x8000) | len(self.body)
        head = SOF + addr + self.password.to_bytes(2, "big") + bytes([self.function]) + dl.to_bytes(2, "big")
        raw = head + bytes([self.start]) + self.body + bytes([self.end])
        return raw + crc16(raw).to_bytes(2, "big")


HEADER = 2 + 6 + 2 + 1 + 2 + 1  # up to and including the start byte
OVERHEAD = HEADER + 1 + 2


def decode(raw: bytes) -> Frame:
    """One complete frame (exactly its bytes) → Frame; raises FrameError with a reason."""
    if raw[:2] != SOF:
        raise FrameError("start", "frame does not start with 7E 7E")
    if len(raw) < OVERHEAD:
        raise FrameError("short", f"{len(raw)} bytes")
    dl = int.from_bytes(raw[11:13], "big")
    upward, length = (dl >> 12) == 0, dl & 0x0FFF
    if len(raw) != OVERHEAD + length:
        raise FrameError("length", f"header says body {length}, frame has {len(raw) - OVERHEAD}")
    if crc16(raw[:-2]) != int.from_bytes(raw[-2:], "big"):
        raise FrameError("crc", f"CRC {raw[-2:].hex()} != {crc16(raw[:-2]):04x}")
    if raw[13] not in (STX, SYN):
        raise FrameError("start", f"body start byte {raw[13]:02x}")
    if upward:
        centre, station = raw[2], unbcd(raw[3:8])
    else:
        station, centre = unbcd(raw[2:7]), raw[7]
    return Frame(station=station, function=raw[10], body=raw[HEADER:HEADER + length], centre=centre,
                 password=int.from_bytes(raw[8:10], "big"), upward=upward, end=raw[-3], start=raw[13])


class Deframer:
    """Cuts a byte stream into frames; junk before a start marker is skipped and reported."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        self.buf += data
        out: list[Frame | FrameError] = []
        while True:
            i = self.buf.find(SOF)
            if i < 0:
                if len(self.buf) > 1:
                    out.append(FrameError("junk", f"{len(self.buf) - 1} bytes without a frame start"))
                    del self.buf[:-1]
                return out
            if i > 0:
                out.append(FrameError("junk", f"{i} bytes before a frame start"))
                del self.buf[:i]
            if len(self.buf) < HEADER:
                return out
            dl = int.from_bytes(self.buf[11:13], "big")
            if dl >> 12 not in (0, 8) or self.buf[13] not in (STX, SYN):
                # not a header after all (a stray 7E before the real one): never wait for a length it invents
                out.append(FrameError("junk", "7E 7E without a valid header"))
                del self.buf[:1]
                continue
            length = dl & 0x0FFF
            total = OVERHEAD + length
            if len(self.buf) < total:
                return out
            raw = bytes(self.buf[:total])
            try:
                out.append(decode(raw))
                del self.buf[:total]
            except FrameError as exc:
                out.append(exc)
                del self.buf[:2]  # resynchronise on the next start marker


# --- report bodies ---------------------------------------------------------------------------------

def _time(raw: bytes) -> datetime:
    s = unbcd(raw)
    try:
        t = datetime(2000 + int(s[0:2]), int(s[2:4]), int(s[4:6]), int(s[6:8]), int(s[8:10]),
                     int(s[10:12]) if len(s) >= 12 else 0, tzinfo=BEIJING)
    except ValueError as exc:
        raise FrameError("time", f"{s}: {exc}") from None
    return t.astimezone(timezone.utc)


def _bcd_time(t: datetime, seconds: bool) -> bytes:
    t = t.astimezone(BEIJING)
    return bcd(t.strftime("%y%m%d%H%M%S" if seconds else "%y%m%d%H%M"))


@dataclass
class Report:
    serial: int
    sent_at: datetime
    station: str
    station_type: int
    observed_at: datetime
    elements: dict[int, float | None] = field(default_factory=dict)  # element id → value (None: no data)
    series: dict[int, list[float | None]] = field(default_factory=dict)  # F4/F5: twelve 5-minute values


def parse_report(body: bytes) -> Report:
    try:
        return _parse_report(body)
    except IndexError:
        raise FrameError("body", "report body ends inside an element") from None


def _parse_report(body: bytes) -> Report:
    if len(body) < 8 + 8 + 7:
        raise FrameError("body", f"report body of {len(body)} bytes is too short")
    rep = Report(serial=int.from_bytes(body[0:2], "big"), sent_at=_time(body[2:8]), station="", station_type=0,
                 observed_at=_time(body[2:8]))
    i = 8
    while i < len(body):
        ident = body[i]
        if ident == 0xF1 and body[i + 1] == 0xF1:
            rep.station, rep.station_type = unbcd(body[i + 2:i + 7]), body[i + 7]
            i += 8
        elif ident == 0xF0 and body[i + 1] == 0xF0:
            rep.observed_at = _time(body[i + 2:i + 7])
            i += 7
        elif ident in (0xF4, 0xF5) and body[i + 1] == 0x60:  # twelve 5-minute values, one byte each (binary)
            raw = body[i + 2:i + 14]
            if len(raw) != 12:
                raise FrameError("body", "short 5-minute series")
            scale = 0.1 if ident == 0xF4 else 0.01
            rep.series[ident] = [None if b == 0xFF else b * scale for b in raw]
            i += 14
        else:
            if ident == 0xFF:  # two-byte identifier
                ident, i = 0xFF00 | body[i + 1], i + 1
            definition = body[i + 1]
            n, dec = definition >> 3, definition & 0x07
            raw = body[i + 2:i + 2 + n]
            if n == 0 or len(raw) != n:
                raise FrameError("body", f"element {ident:02X}: definition {definition:02X} runs past the body")
            rep.elements[ident] = _value(raw, dec)
            i += 2 + n
    if not rep.station:
        raise FrameError("body", "report carries no F1F1 station address")
    return rep


def _value(raw: bytes, decimals: int) -> float | None:
    if all(b == 0xFF for b in raw):
        return None
    sign = 1
    if raw[0] == 0xFF:
        sign, raw = -1, raw[1:]
    return sign * int(unbcd(raw)) / 10 ** decimals


def element(ident: int, value: float | None, n_bytes: int, decimals: int) -> bytes:
    """One element as an RTU sends it: a negative value gains a leading ``FF`` sign byte (length + 1)."""
    if value is None:
        return bytes([ident, (n_bytes << 3) | decimals]) + b"\xff" * n_bytes
    digits = bcd(f"{round(abs(value) * 10 ** decimals):0{2 * n_bytes}d}")
    if value < 0:
        return bytes([ident, ((n_bytes + 1) << 3) | decimals]) + b"\xff" + digits
    return bytes([ident, (n_bytes << 3) | decimals]) + digits


def series(ident: int, values: list[float | None]) -> bytes:
    """An F4 (rain, 0.1 mm) or F5 (relative level, 0.01 m) element: twelve one-byte 5-minute values."""
    scale = 10 if ident == 0xF4 else 100
    return bytes([ident, 0x60]) + bytes(0xFF if v is None else min(0xFE, round(v * scale)) for v in values)


def report_body(serial: int, sent_at: datetime, station: str, station_type: int, observed_at: datetime,
                elements: list[bytes]) -> bytes:
    return (serial.to_bytes(2, "big") + _bcd_time(sent_at, True) + b"\xf1\xf1" + bcd(station)
            + bytes([station_type]) + b"\xf0\xf0" + _bcd_time(observed_at, False) + b"".join(elements))


def reply_to(frame: Frame, serial: int, now: datetime) -> Frame:
    """The centre's confirmation of an upstream frame: same station, function and serial, direction down."""
    return Frame(station=frame.station, function=frame.function, centre=frame.centre, password=frame.password,
                 upward=False, body=serial.to_bytes(2, "big") + _bcd_time(now, True), end=EOT)
