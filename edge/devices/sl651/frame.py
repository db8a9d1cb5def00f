"""SL 651-2014 HEX/BCD frames, pure: CRC, frame codec, report bodies, the centre's reply.

Upstream frame (RTU → centre)::

    7E 7E | centre (1) | station (5, BCD) | password (2) | function (1) |
    direction+length (2: top 4 bits 0 = up, 8 = down; low 12 bits = body length) |
    STX 02 | body | ETX 03 / ETB 17 / ENQ 05 | CRC-16 (2, high byte first)

A report too long for one frame goes as several packets (the standard's M3 mode): each starts with
``SYN 16`` instead of ``STX``, then three bytes of packet count (high 12 bits) and packet number (low 12
bits, 1..count), counted in the frame's length; every packet but the last ends with ``ETB``, the last
with ``ETX``. The report body is the packets' bodies joined in number order (:class:`Reassembly`).

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
    """A frame that cannot be accepted; ``reason`` is a short metric label. ``station`` is the station
    its header names, when the header could be read (so a bad frame counts against its own device)."""

    def __init__(self, reason: str, message: str, station: str | None = None) -> None:
        self.reason = reason
        self.station = station
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
    packet: tuple[int, int] | None = None  # M3 (SYN) frames: (packet count, this packet's number from 1)

    @property
    def start(self) -> int:
        return STX if self.packet is None else SYN

    def encode(self) -> bytes:
        m3 = b""
        if self.packet is not None:
            m3 = ((self.packet[0] << 12) | self.packet[1]).to_bytes(3, "big")
        if len(m3) + len(self.body) > MAX_BODY:
            raise ValueError("body too long for one frame")
        addr = (bytes([self.centre]) + bcd(self.station)) if self.upward else (bcd(self.station) + bytes([self.centre]))
        dl = (0 if self.upward else 0x8000) | (len(m3) + len(self.body))
        head = SOF + addr + self.password.to_bytes(2, "big") + bytes([self.function]) + dl.to_bytes(2, "big")
        raw = head + bytes([SYN if m3 else STX]) + m3 + self.body + bytes([self.end])
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
    station_bytes = raw[3:8] if upward else raw[2:7]
    named = station_bytes.hex() if station_bytes.hex().isdigit() else None
    if crc16(raw[:-2]) != int.from_bytes(raw[-2:], "big"):
        raise FrameError("crc", f"CRC {raw[-2:].hex()} != {crc16(raw[:-2]):04x}", named)
    if raw[13] not in (STX, SYN):
        raise FrameError("start", f"body start byte {raw[13]:02x}", named)
    station, centre = unbcd(station_bytes), (raw[2] if upward else raw[7])
    body, packet = raw[HEADER:HEADER + length], None
    if raw[13] == SYN:
        if length < 3:
            raise FrameError("packet", "a SYN frame without its packet count and number", station)
        m3 = int.from_bytes(body[:3], "big")
        count, number = m3 >> 12, m3 & 0xFFF
        if not 1 <= number <= count:
            raise FrameError("packet", f"packet {number} of {count}", station)
        body, packet = body[3:], (count, number)
    return Frame(station=station, function=raw[10], body=body, centre=centre,
                 password=int.from_bytes(raw[8:10], "big"), upward=upward, end=raw[-3], packet=packet)


class Deframer:
    """Cuts a byte stream into frames; junk before a start marker is skipped and reported.

    Each bad frame is reported once: after a frame is refused (bad CRC, say) the deframer resynchronises on
    the next start marker *inside* it too (its length field may be what was corrupted), but the bytes
    of the refused frame it skips on the way are not reported again as junk. :meth:`close` reports a
    frame the link cut off.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.quiet = 0  # bytes ahead that belong to a frame already reported

    def _skip(self, n: int, out: list[Frame | FrameError], what: str) -> None:
        del self.buf[:n]
        counted, self.quiet = max(0, n - self.quiet), max(0, self.quiet - n)
        if counted:
            out.append(FrameError("junk", what.format(n=counted)))

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        self.buf += data
        out: list[Frame | FrameError] = []
        while True:
            i = self.buf.find(SOF)
            if i < 0:
                if len(self.buf) > 1:
                    self._skip(len(self.buf) - 1, out, "{n} bytes without a frame start")
                return out
            if i > 0:
                self._skip(i, out, "{n} bytes before a frame start")
            if len(self.buf) < HEADER:
                return out
            dl = int.from_bytes(self.buf[11:13], "big")
            if dl >> 12 not in (0, 8) or self.buf[13] not in (STX, SYN):
                # not a header after all (a stray 7E before the real one): never wait for a length it invents
                self._skip(1, out, "7E 7E without a valid header")
                continue
            length = dl & 0x0FFF
            total = OVERHEAD + length
            if len(self.buf) < total:
                return out
            raw = bytes(self.buf[:total])
            try:
                out.append(decode(raw))
                del self.buf[:total]
                self.quiet = 0
            except FrameError as exc:
                out.append(exc)
                del self.buf[:2]  # resynchronise on the next start marker
                self.quiet = total - 2

    def close(self) -> list[FrameError]:
        """The link is gone: what is left in the buffer is a frame it cut off (or junk)."""
        out: list[FrameError] = []
        rest, self.buf, quiet, self.quiet = bytes(self.buf), bytearray(), self.quiet, 0
        if rest[:2] == SOF:
            station = rest[3:8].hex() if len(rest) >= 8 and rest[3:8].hex().isdigit() else None
            need = f" of {OVERHEAD + (int.from_bytes(rest[11:13], 'big') & 0x0FFF)}" if len(rest) >= 13 else ""
            out.append(FrameError("truncated", f"the link closed {len(rest)} bytes into a frame{need}", station))
        elif len(rest) > quiet and rest != SOF[:1]:
            out.append(FrameError("junk", f"{len(rest) - quiet} bytes without a frame start"))
        return out


@dataclass
class _Packets:
    count: int
    bodies: dict[int, bytes] = field(default_factory=dict)


class Reassembly:
    """Multi-packet (M3) reports of one link, joined: packets of one (station, function) in number order.

    A link delivers packets in the order the RTU sent them, 1 to count, so a packet 1 always begins a report:
    anything pending then (a report whose later packets never came, or whose packet 1 was lost) is reported
    ``incomplete`` — never joined with the new report's packets into a report nobody sent. A packet sent
    again (an RTU repeating one) replaces itself; a different packet count or a different body under a
    number already held also means the RTU started over. :meth:`abandon` reports what a dropped link cut short.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[str, int], _Packets] = {}

    def feed(self, frame: Frame) -> list[Frame | FrameError]:
        """A checked frame → the frame itself (single), nothing yet, or the whole report (last packet)."""
        if frame.packet is None:
            return [frame]
        out: list[Frame | FrameError] = []
        count, number = frame.packet
        key = (frame.station, frame.function)
        parts = self.pending.get(key)
        changed = parts is not None and parts.bodies.get(number) != frame.body and (
            number == 1 or number in parts.bodies)
        if parts is not None and (changed or parts.count != count):  # the RTU started over
            out.append(self._incomplete(key, parts))
            parts = None
        if parts is None:
            parts = self.pending[key] = _Packets(count)
        parts.bodies[number] = frame.body
        if len(parts.bodies) == count:
            del self.pending[key]
            body = b"".join(parts.bodies[i] for i in range(1, count + 1))
            out.append(Frame(station=frame.station, function=frame.function, body=body, centre=frame.centre,
                             password=frame.password, upward=frame.upward, end=ETX))
        return out

    def abandon(self) -> list[FrameError]:
        out = [self._incomplete(key, parts) for key, parts in self.pending.items()]
        self.pending.clear()
        return out

    @staticmethod
    def _incomplete(key: tuple[str, int], parts: _Packets) -> FrameError:
        return FrameError("incomplete", f"function {key[1]:02X}: {len(parts.bodies)} of {parts.count} packets "
                          f"(missing {sorted(set(range(1, parts.count + 1)) - set(parts.bodies))[:10]})", key[0])


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
