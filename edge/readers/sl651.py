"""SL 651-2014 RTUs (rain, water level): reports pushed over serial or TCP, checked, parsed and answered.

Over ``transport: serial`` the gateway opens the RTU's line; over ``tcp`` the
RTU dials in (as over GPRS/4G) to ``listen_host:listen_port``. Each report's
elements become samples stamped with the RTU's observation time; frames with
a bad CRC, a wrong length, a foreign station or an unparsable body are
counted by reason, logged once a minute, and otherwise ignored.

Example: edge/readers/sl651.example.yaml
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import AsyncIterator

import serial_asyncio
from prometheus_client import Counter

from edge.config import Sl651Device
from edge.readers import REJECTED, ReaderContext, Sample, register
from edge.readers.sl651_frame import KEEPALIVE, REPORTS, Deframer, Frame, FrameError, parse_report, reply_to
from yujing.errors import DeviceError
from yujing.log import Limiter

log = logging.getLogger("yujing.edge.sl651")
FRAMES = Counter("yujing_edge_sl651_frames_total", "SL651 frames accepted", ["device", "function"])


class Listener:
    """One TCP port RTUs dial in to; each frame goes to the reader of its station (many RTUs, one port)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.readers: dict[str, Sl651Reader] = {}
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.limiter = Limiter(60.0)

    async def attach(self, reader: Sl651Reader) -> None:
        self.readers[reader.device.station] = reader
        if self.server is None:
            self.server = await asyncio.start_server(self._dial_in, self.host, self.port)

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
        try:
            while data := await r.read(4096):
                for item in deframer.feed(data):
                    reader = None if isinstance(item, FrameError) else self.readers.get(item.station)
                    if reader is not None:
                        await reader.frame(item, w)
                        continue
                    reason = item.reason if isinstance(item, FrameError) else "station"
                    REJECTED.labels(f"sl651:{self.port}", reason).inc()
                    if self.limiter.allow(reason):
                        log.warning("SL651 frame rejected", extra={"kv": {
                            "port": self.port, "reason": reason, "error": str(item)[:120],
                            "suppressed": self.limiter.take_suppressed(reason)}})
        except (OSError, ConnectionError):
            pass  # the RTU's 4G link dropped: it dials again, and each device's silence is watched
        finally:
            self.writers.discard(w)
            w.close()


@register("sl651")
class Sl651Reader:
    def __init__(self, device: Sl651Device, ctx: ReaderContext) -> None:
        self.device = device
        self.clock = ctx.clock
        self.queue: asyncio.Queue[list[Sample] | Exception] = asyncio.Queue()
        self.limiter = Limiter(60.0)
        self.rejected = 0
        self._task: asyncio.Task | None = None
        self._listener: Listener | None = None
        if device.transport == "tcp":
            key = ("sl651", device.listen_host, device.listen_port)
            self._listener = ctx.shared.setdefault(key, Listener(device.listen_host, device.listen_port))

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
                        self._reject(item.reason, str(item))
                    else:
                        await self.frame(item, w)
        except (OSError, ConnectionError) as exc:  # the line itself failed: the poller reopens it with backoff
            await self.queue.put(DeviceError(self.device.id, str(exc)))
        finally:
            w.close()

    async def frame(self, frame: Frame, w: asyncio.StreamWriter) -> None:
        """One checked frame on this device's link: parse, answer, queue its samples."""
        dev = self.device
        if not frame.upward:
            return self._reject("direction", "a downstream frame on the upstream link")
        if frame.station != dev.station:
            return self._reject("station", f"station {frame.station}, expected {dev.station}")
        FRAMES.labels(dev.id, f"{frame.function:02X}").inc()
        if frame.function == KEEPALIVE:
            return
        if frame.function not in REPORTS:
            return self._reject("function", f"function {frame.function:02X} is not a report")
        try:
            report = parse_report(frame.body)
        except FrameError as exc:
            return self._reject(exc.reason, str(exc))
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

    def _reject(self, reason: str, message: str) -> None:
        self.rejected += 1
        REJECTED.labels(self.device.id, reason).inc()
        if self.limiter.allow(reason):
            log.warning("SL651 frame rejected", extra={"kv": {
                "device": self.device.id, "reason": reason, "error": message,
                "suppressed": self.limiter.take_suppressed(reason)}})
