"""SL 651-2014 RTUs (rain, water level): reports pushed over serial or TCP, checked, parsed and answered.

Over ``transport: serial`` the gateway opens the RTU's line; over ``tcp`` the
RTU dials in (as over GPRS/4G) to ``listen_host:listen_port``. Each report's
elements become samples stamped with the RTU's observation time; frames with
a bad CRC, a wrong length, a foreign station or an unparsable body are
counted by reason (once each), logged once a minute, and otherwise ignored. A frame a dropped link cut
off counts as ``truncated``, a multi-packet report it cut short as ``incomplete``. Multi-packet (SYN/ETB)
reports are joined per station and answered once, when whole.

Example: sl651.example.yaml beside this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import AsyncIterator

import serial_asyncio
from prometheus_client import Counter

from edge.devices.reader import ReaderContext, Sample
from edge.devices.sl651.config import Sl651Device
from edge.devices.sl651.frame import (
    KEEPALIVE,
    REPORTS,
    Deframer,
    Frame,
    FrameError,
    Reassembly,
    parse_report,
    reply_to,
)
from yujing.errors import DeviceError
from yujing.log import Limiter

log = logging.getLogger("yujing.edge.sl651")
FRAMES = Counter("yujing_edge_sl651_frames_total", "SL651 frames accepted", ["device", "function"])


class Listener:
    """One TCP port RTUs dial in to; each frame goes to the reader of its station (many RTUs, one port)."""

    def __init__(self, host: str, port: int, ctx: ReaderContext) -> None:
        self.host, self.port = host, port
        self.ctx = ctx
        self.readers: dict[str, Sl651Reader] = {}
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.limiter = Limiter(60.0)
        # the devices of one port start together: without it each saw no server yet, each bound the port,
        # and all but the first failed with "address already in use" (and retried) at every start
        self.starting = asyncio.Lock()

    async def attach(self, reader: Sl651Reader) -> None:
        async with self.starting:
            if self.server is None:
                self.server = await asyncio.start_server(self._dial_in, self.host, self.port)
            self.readers[reader.device.station] = reader

    def detach(self, reader: Sl651Reader) -> None:
        self.readers.pop(reader.device.station, None)
        if not self.readers and self.server is not None:
            self.server.close()
            for w in list(self.writers):
                w.close()
            self.server = None

    async def _dial_in(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.writers.add(w)
        deframer = Deframer()
        heard: set[Sl651Reader] = set()  # whose multi-packet reports this link may have left unfinished
        try:
            while data := await r.read(4096):
                for item in deframer.feed(data):
                    await self._route(item, w, heard)
        except (OSError, ConnectionError):
            pass  # the RTU's 4G link dropped: it dials again, and each device's silence is watched
        finally:
            self.writers.discard(w)
            w.close()
            for item in deframer.close():  # what the dropped link cut off: counted, logged
                await self._route(item, w, heard)
            for reader in heard:
                reader.link_closed()

    async def _route(self, item: Frame | FrameError, w: asyncio.StreamWriter, heard: set[Sl651Reader]) -> None:
        reader = self.readers.get(item.station) if item.station else None
        if reader is not None:
            heard.add(reader)
            if isinstance(item, FrameError):
                reader.reject(item.reason, str(item))
            else:
                await reader.frame(item, w)
            return
        reason = item.reason if isinstance(item, FrameError) else "station"
        self.ctx.reject(f"sl651:{self.port}", reason)
        if self.limiter.allow(reason):
            log.warning("SL651 frame rejected", extra={"kv": {
                "port": self.port, "reason": reason, "error": str(item)[:120],
                "suppressed": self.limiter.take_suppressed(reason)}})


class Sl651Reader:
    def __init__(self, device: Sl651Device, ctx: ReaderContext) -> None:
        self.device = device
        self.ctx = ctx
        self.clock = ctx.clock
        self.packets = Reassembly()
        self.queue: asyncio.Queue[list[Sample] | Exception] = asyncio.Queue()
        self.limiter = Limiter(60.0)
        self.rejected = 0
        self._task: asyncio.Task | None = None
        self._listener: Listener | None = None
        if device.transport == "tcp":
            key = ("sl651", device.listen_host, device.listen_port)
            self._listener = ctx.shared.setdefault(key, Listener(device.listen_host, device.listen_port, ctx))

    async def __aenter__(self) -> Sl651Reader:
        dev = self.device
        try:
            if self._listener is None:
                r, w = await serial_asyncio.open_serial_connection(url=dev.port, baudrate=dev.baudrate)
                self._task = asyncio.create_task(self._serial(r, w))
            else:
                await self._listener.attach(self)
        except OSError as exc:
            raise DeviceError(dev.id, f"cannot open {dev.transport} link: {exc}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # let it finish; our own cancellation still propagates
        if self._listener is not None:
            self._listener.detach(self)

    async def samples(self) -> AsyncIterator[list[Sample]]:
        while True:
            item = await self.queue.get()
            if isinstance(item, Exception):
                raise item
            yield item

    async def _serial(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        deframer = Deframer()
        try:
            while True:
                data = await r.read(4096)
                if not data:
                    raise ConnectionError(f"{self.device.port} closed")
                for item in deframer.feed(data):
                    if isinstance(item, FrameError):
                        self.reject(item.reason, str(item))
                    else:
                        await self.frame(item, w)
        except (OSError, ConnectionError) as exc:  # the line itself failed: the poller reopens it with backoff
            for item in deframer.close():
                self.reject(item.reason, str(item))
            self.link_closed()
            await self.queue.put(DeviceError(self.device.id, str(exc)))
        finally:
            w.close()

    def link_closed(self) -> None:
        """The link went down: multi-packet reports it left unfinished are lost (the RTU sends them again)."""
        for err in self.packets.abandon():
            self.reject(err.reason, str(err))

    async def frame(self, frame: Frame, w: asyncio.StreamWriter) -> None:
        """One checked frame on this device's link: parse, answer, queue its samples."""
        dev = self.device
        if not frame.upward:
            return self.reject("direction", "a downstream frame on the upstream link")
        if frame.station != dev.station:
            return self.reject("station", f"station {frame.station}, expected {dev.station}")
        FRAMES.labels(dev.id, f"{frame.function:02X}").inc()
        if frame.function == KEEPALIVE:
            return
        if frame.function not in REPORTS:
            return self.reject("function", f"function {frame.function:02X} is not a report")
        for item in self.packets.feed(frame):
            if isinstance(item, FrameError):
                self.reject(item.reason, str(item))
            else:
                await self._report(item, w)

    async def _report(self, frame: Frame, w: asyncio.StreamWriter) -> None:
        """One whole report (a single frame, or the packets of one joined): parse, answer, queue its samples."""
        dev = self.device
        try:
            report = parse_report(frame.body)
        except FrameError as exc:
            return self.reject(exc.reason, str(exc))
        if dev.reply:
            w.write(reply_to(frame, report.serial, self.clock.now()).encode())
            with contextlib.suppress(OSError):
                await w.drain()
        samples = []
        for ident, value in report.elements.items():
            el = dev.elements.get(f"{ident:02X}")
            if el is None or value is None:
                continue
            samples.append(Sample(el.quantity, value, el.unit, ts=report.observed_at, checks=el,
                                  meta={"serial": str(report.serial), "function": f"{frame.function:02X}"}))
        for ident, values in report.series.items():  # F4/F5: the hour's twelve 5-minute values, oldest first
            el = dev.elements.get(f"{ident:02X}")
            if el is None:
                continue
            for i, value in enumerate(values):
                if value is not None:  # each stamped at the end of its 5 minutes
                    ts = report.observed_at - timedelta(minutes=5 * (len(values) - 1 - i))
                    samples.append(Sample(el.quantity, value, el.unit, ts=ts, checks=el,
                                          meta={"serial": str(report.serial), "function": f"{frame.function:02X}"}))
        await self.queue.put(samples)

    def reject(self, reason: str, message: str) -> None:
        self.rejected += 1
        self.ctx.reject(self.device.id, reason)
        if self.limiter.allow(reason):
            log.warning("SL651 frame rejected", extra={"kv": {
                "device": self.device.id, "reason": reason, "error": message,
                "suppressed": self.limiter.take_suppressed(reason)}})


READERS = {"sl651": Sl651Reader}
