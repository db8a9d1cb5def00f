"""A simulated SL 651-2014 RTU: timed reports of rainfall and water level, over a pty or dialling in by TCP."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from edge.devices.sl651.frame import TIMED, Deframer, Frame, FrameError, element, report_body
from simulators.devices.faults import Fault, GoesOffline
from simulators.devices.place import Place
from simulators.devices.pty import PtyLine
from simulators.devices.values import ValueSource

# element id → (bytes, decimals), the definitions common RTUs use; other elements get 4 bytes, 2 decimals
LAYOUT = {0x20: (3, 1), 0x26: (3, 1), 0x39: (4, 3)}
SERIES = (0xF4, 0xF5)  # twelve 5-minute values in one element: not simulated


class Sl651RtuSim(GoesOffline):
    def __init__(self, device: Any, sources: dict[str, ValueSource], clock: Any) -> None:
        self.device = device
        self.sources = sources
        self.clock = clock
        self.fault = Fault.NONE
        self.serial = 0
        self.replies: list[Frame] = []
        self.sent = 0
        self._pty: PtyLine | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self._deframer = Deframer()

    def frame(self) -> bytes:
        now = self.clock.now()
        self.serial = (self.serial + 1) % 65536
        els = [element(ident, self.sources[el.quantity].value(now), *LAYOUT.get(ident, (4, 2)))
               for ident, el in self._elements() if el.quantity in self.sources]
        body = report_body(self.serial, now, self.device.station, 0x50, now, els)
        return Frame(self.device.station, TIMED, body).encode()

    def _elements(self) -> list[tuple[int, Any]]:
        """The configured elements this RTU reports (by element id), in the config's order."""
        out = [(int(key, 16), el) for key, el in self.device.elements.items()]
        return [(ident, el) for ident, el in out if ident <= 0xFF and ident not in SERIES]

    async def send(self, raw: bytes) -> None:
        """Put raw bytes on the link (tests send malformed frames this way)."""
        if self._pty is not None:
            self._pty.write(raw)
        elif self._writer is not None:
            self._writer.write(raw)
            await self._writer.drain()

    async def report_now(self) -> None:
        raw = self.frame()
        if self.fault is Fault.GARBLED:
            raw = raw[:-1] + bytes([raw[-1] ^ 0xFF])
        await self.send(raw)
        self.sent += 1

    async def _loop(self) -> None:
        while True:  # like a real RTU: the first timed report comes one interval after power-up
            await self.clock.sleep(self.device.interval_s)
            if self.fault in (Fault.NONE, Fault.GARBLED):
                with contextlib.suppress(OSError, ConnectionError):
                    await self.report_now()

    async def _dial(self) -> None:
        while self._writer is None:
            try:
                r, self._writer = await asyncio.open_connection(self.device.listen_host, self.device.listen_port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            asyncio.get_running_loop().create_task(self._read_tcp(r))

    async def _read_tcp(self, r: asyncio.StreamReader) -> None:
        while data := await r.read(4096):
            self._got(data)
        self._writer = None

    def _got(self, data: bytes) -> None:
        self.replies.extend(f for f in self._deframer.feed(data) if not isinstance(f, FrameError))

    def _pty_readable(self) -> None:
        assert self._pty is not None
        with contextlib.suppress(BlockingIOError, OSError):
            self._got(os.read(self._pty.master, 4096))

    async def _start(self) -> None:
        if self.device.transport == "serial":
            self._pty = PtyLine(self.device.port)
            asyncio.get_running_loop().add_reader(self._pty.master, self._pty_readable)
        else:
            await asyncio.wait_for(self._dial(), 10)
        self._task = asyncio.create_task(self._loop())

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # let it finish; our own cancellation still propagates
            self._task = None
        if self._pty is not None:
            asyncio.get_running_loop().remove_reader(self._pty.master)
            self._pty.close()
            self._pty = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def __aenter__(self) -> "Sl651RtuSim":
        if self.device.transport == "serial":
            await self._start()
        else:  # the RTU dials in: the agent must be listening first, so connect in the background
            self._task = asyncio.create_task(self._tcp_start())
        return self

    async def _tcp_start(self) -> None:
        await self._dial()
        self._task = asyncio.create_task(self._loop())

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()


def simulate(devices: list[Any], sources: dict[str, dict[str, ValueSource]], clock: Any,
             mqtt: Any = None) -> dict[str, Sl651RtuSim]:
    return {d.id: Sl651RtuSim(d, sources.get(d.id, {}), clock) for d in devices}


def relocate(dev: Any, place: Place) -> Any:
    """A serial RTU on a pty of the place's; one that dials in, to a loopback port of the place's (RTUs
    that shared a listener still share one)."""
    if dev.transport == "serial":
        return dev.model_copy(update={"port": place.tty(dev.port)})
    port = place.port("sl651", dev.listen_host, dev.listen_port)
    return dev.model_copy(update={"listen_host": "127.0.0.1", "listen_port": port})
