"""A pseudo-terminal pair standing in for a serial line, reachable at the device's configured path."""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path


class PtyLine:
    """The simulator holds the master end; the configured ``path`` becomes a symlink to the slave end.

    The simulator also keeps the slave end open, so the line does not hang up
    (EIO on the master) while the agent closes and reopens its side.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.lost = 0  # bytes the line could not take
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tty.setraw(self.master)
        os.set_blocking(self.master, False)
        self.slave_name = os.ttyname(self._slave)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_symlink() or self.path.exists():
            self.path.unlink()
        self.path.symlink_to(self.slave_name)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            if self.path.is_symlink():
                self.path.unlink()
        except OSError:
            pass

    def write(self, data: bytes) -> int:
        """Put bytes on the line; what the line cannot take now is lost, as on a real wire with nobody
        listening (never block or spin: the simulator shares the event loop). Returns bytes written."""
        try:
            n = os.write(self.master, data)
        except (BlockingIOError, OSError):
            n = 0
        self.lost += len(data) - n
        return n

    async def write_all(self, data: bytes) -> None:
        """Put every byte on the line, waiting while it is full (as a device's UART would), never losing any:
        for tests that need a long burst to arrive whole, which :meth:`write` drops once the line is full."""
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view):]
            except BlockingIOError:
                writable = loop.create_future()
                loop.add_writer(self.master, writable.set_result, None)
                try:
                    await writable
                finally:
                    loop.remove_writer(self.master)
