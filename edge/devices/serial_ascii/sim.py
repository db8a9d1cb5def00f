"""A simulated line-oriented serial instrument on a pty: answers ``request`` or streams a line per interval."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from typing import Any

from simulators.devices.faults import Fault, GoesOffline, source_key
from simulators.devices.place import Place
from simulators.devices.pty import PtyLine
from simulators.devices.values import ValueSource

_GROUP = re.compile(r"\(\?P<(\w+)>(?:[^()\\]|\\.|\([^()]*\))*\)")


def _name(key: str | int) -> str:
    return f"c{key}" if isinstance(key, int) or str(key).isdigit() else str(key)


def template_from(device: Any) -> str:
    """A format string producing lines the device's parser accepts (regex groups → {key})."""
    if device.delimiter is not None:
        width = max(int(f.key) for f in device.fields) + 1
        cols = ["0"] * width
        for f in device.fields:
            cols[int(f.key)] = "{" + _name(f.key) + "}"
        return device.delimiter.join(cols)
    t = _GROUP.sub(lambda m: "{" + m.group(1) + "}", device.pattern)
    t = t.replace(r"\s+", " ").replace(r"\s*", "").replace("^", "").replace("$", "")
    return re.sub(r"\\(.)", r"\1", t)


class AsciiGaugeSim(GoesOffline):
    def __init__(self, device: Any, sources: dict[str, ValueSource], clock: Any) -> None:
        self.device = device
        self.sources = sources
        self.clock = clock
        self.fault = Fault.NONE
        self.template = template_from(device)
        self.lines_sent = 0
        self._pty: PtyLine | None = None
        self._task: asyncio.Task | None = None
        self._inbuf = b""
        if re.search(device.pattern or "", self.line()) is None:
            raise ValueError(f"cannot derive a line for pattern {device.pattern!r}: set sim.template")

    def line(self) -> str:
        now = self.clock.now()
        vals = {}
        for f in self.device.fields:
            src = self.sources.get(source_key(f.quantity, f.sensor)) or self.sources.get(f.quantity)
            raw = src.value(now) if src else 0.0
            vals[_name(f.key)] = f"{(raw - f.offset) / f.scale:.4f}"
        return self.template.format(**vals)

    def emit(self) -> None:
        if self._pty is None or self.fault in (Fault.HANG, Fault.OFFLINE):
            return
        text = "#?@!~" if self.fault is Fault.GARBLED else self.line()
        self._pty.write((text + "\r\n").encode(self.device.encoding))
        self.lines_sent += 1

    def send_raw(self, data: bytes) -> None:
        if self._pty is not None:
            self._pty.write(data)

    async def send_all(self, data: bytes) -> None:
        """Like :meth:`send_raw`, but waits while the line is full instead of losing the rest."""
        if self._pty is not None:
            await self._pty.write_all(data)

    def _readable(self) -> None:
        assert self._pty is not None
        with contextlib.suppress(BlockingIOError, OSError):
            self._inbuf += os.read(self._pty.master, 4096)
        req = self.device.request.encode(self.device.encoding)
        while req in self._inbuf:
            _, _, self._inbuf = self._inbuf.partition(req)
            self.emit()

    async def _stream(self) -> None:
        while True:
            await self.clock.sleep(self.device.interval_s)
            self.emit()

    async def _start(self) -> None:
        self._pty = PtyLine(self.device.port)
        if self.device.request is not None:
            asyncio.get_running_loop().add_reader(self._pty.master, self._readable)
        else:
            self._task = asyncio.create_task(self._stream())

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # let it finish; our own cancellation still propagates
            self._task = None
        if self._pty is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pty.master)
            self._pty.close()
            self._pty = None

    async def __aenter__(self) -> "AsciiGaugeSim":
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()


def simulate(devices: list[Any], sources: dict[str, dict[str, ValueSource]], clock: Any,
             mqtt: Any = None) -> dict[str, AsciiGaugeSim]:
    return {d.id: AsciiGaugeSim(d, sources.get(d.id, {}), clock) for d in devices}


def relocate(dev: Any, place: Place) -> Any:
    return dev.model_copy(update={"port": place.tty(dev.port)})
