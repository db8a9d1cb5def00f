"""Line-oriented serial instruments: a request/answer gauge (``request:`` set) or one that streams lines.

Each line is parsed by ``pattern`` (a regex whose named groups are the
fields' ``key``) or split by ``delimiter`` (fields' ``key`` = column index).
A line that does not parse is counted and logged, never fatal. So is a line longer than
``max_line_bytes``: its bytes are discarded up to the next newline, whatever comes in between (a
transmitter stuck without a newline once sent 200 KB, and asyncio's line reader raised on it).

Example: serial_ascii.example.yaml beside this module.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import AsyncIterator

import serial_asyncio

from edge.devices.reader import ReaderContext, Sample
from edge.devices.serial_ascii.config import SerialAsciiDevice
from yujing.errors import DeviceError, PayloadError
from yujing.log import Limiter

log = logging.getLogger("yujing.edge.serial_ascii")


def parse_line(device: SerialAsciiDevice, line: str) -> list[Sample]:
    """One line → samples; raises PayloadError("parse" | "value") when it does not fit the configured shape."""
    line = line.strip()
    if device.pattern is not None:
        m = re.search(device.pattern, line)
        if m is None:
            raise PayloadError("parse", f"line {line[:80]!r} does not match the pattern")
        raw = {k: v for k, v in m.groupdict().items() if v is not None}
    else:
        cols = [c.strip() for c in line.split(device.delimiter)]
        raw = {i: c for i, c in enumerate(cols)}
    out = []
    for f in device.fields:
        text = raw.get(f.key if device.pattern is not None else int(f.key))
        if text is None:
            raise PayloadError("parse", f"line {line[:80]!r} has no field {f.key!r}")
        try:
            value = float(text)
        except ValueError:
            raise PayloadError("value", f"field {f.key!r} = {text[:20]!r} is not a number") from None
        out.append(Sample(f.quantity, value * f.scale + f.offset, f.unit, f.sensor, checks=f))
    return out


class _AsciiLine:
    def __init__(self, device: SerialAsciiDevice, ctx: ReaderContext) -> None:
        self.device = device
        self.ctx = ctx
        self.limiter = Limiter(60.0)
        self.rejected = 0
        self.discarding = False  # inside an overlong line: drop bytes until its newline
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None

    async def __aenter__(self):
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._close()

    async def _open(self) -> None:
        d = self.device
        try:
            self._r, self._w = await serial_asyncio.open_serial_connection(
                limit=d.max_line_bytes, url=d.port, baudrate=d.baudrate, bytesize=d.bytesize, parity=d.parity,
                stopbits=d.stopbits)
        except OSError as exc:
            raise DeviceError(d.id, f"cannot open {d.port}: {exc}") from None
        self.discarding = False

    def _close(self) -> None:
        if self._w is not None:
            self._w.close()
        self._r = self._w = None

    async def _line(self) -> str | None:
        """The next line, or None for an overlong one (counted and logged here, its bytes discarded)."""
        assert self._r is not None
        while True:
            try:
                raw = await self._r.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                raise DeviceError(self.device.id, f"{self.device.port} closed") from None
            except asyncio.LimitOverrunError as exc:
                # past the limit with no newline yet (or one too far): drop what is buffered and go on dropping
                # until the newline that ends this line; it counts once, however long it goes on
                await self._r.readexactly(exc.consumed)
                if not self.discarding:
                    self.discarding = True
                    self.reject(PayloadError("overlong", f"a line longer than {self.device.max_line_bytes} bytes"))
                continue
            if self.discarding:  # the tail of an overlong line
                self.discarding = False
                return None
            return raw.decode(self.device.encoding, errors="replace")

    def reject(self, exc: PayloadError) -> None:
        self.rejected += 1
        self.ctx.reject(self.device.id, exc.reason)
        if self.limiter.allow(exc.reason):
            log.warning("instrument line rejected", extra={"kv": {
                "device": self.device.id, "error": str(exc), "suppressed": self.limiter.take_suppressed(exc.reason)}})


class AsciiPolledReader(_AsciiLine):
    """Opens its port in :meth:`read`, and again after the line was lost (a USB adapter unplugged and
    plugged back, a port missing at boot): the device comes back by itself, and until then every poll fails
    as it should (the poller turns that into comm-error readings)."""

    async def __aenter__(self) -> "AsciiPolledReader":
        return self

    async def read(self) -> list[Sample]:
        assert self.device.request is not None
        if self._w is None or self._w.transport.is_closing():
            self._close()
            await self._open()
        assert self._r is not None and self._w is not None
        while self._r._buffer:
            self._r._buffer.clear()
            self.discarding = False  # what was left of an overlong answer went with it
        try:
            self._w.write(self.device.request.encode(self.device.encoding))
            async with asyncio.timeout(self.device.timeout_s):
                line = await self._line()
        except TimeoutError:  # a silent instrument on a good line: keep the line, ask again next poll
            raise DeviceError(self.device.id, f"no answer within {self.device.timeout_s} s") from None
        except (DeviceError, OSError):  # the line itself failed (EIO, hang-up): reopen it next poll
            self._close()
            raise
        if line is None:  # counted already
            raise PayloadError("overlong", f"an answer longer than {self.device.max_line_bytes} bytes")
        try:
            return parse_line(self.device, line)
        except PayloadError as exc:
            self.reject(exc)
            raise


class AsciiStreamReader(_AsciiLine):
    async def samples(self) -> AsyncIterator[list[Sample]]:
        while True:
            line = await self._line()
            if line is None or not line.strip():
                continue
            try:
                yield parse_line(self.device, line)
            except PayloadError as exc:
                self.reject(exc)


def make(device: SerialAsciiDevice, ctx: ReaderContext) -> _AsciiLine:
    return AsciiPolledReader(device, ctx) if device.request is not None else AsciiStreamReader(device, ctx)


READERS = {"serial_ascii": make}
