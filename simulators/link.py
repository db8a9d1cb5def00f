"""A gateway's 4G link to the broker, simulated: a TCP relay that a drill can cut and restore.

    async with LinkRelay("127.0.0.1", broker_port) as link:   # the gateway connects to link.port
        await link.down()    # every relayed connection is severed (no MQTT DISCONNECT: the broker
                             # fires the gateway's last will), new connections are refused
        await link.up()

Cutting the socket is what a lost 4G bearer looks like from both ends, so the edge agent's outbox,
reconnect and the broker's will are exercised for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class LinkRelay:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.is_up = True
        self._server: asyncio.AbstractServer | None = None
        self._pipes: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> "LinkRelay":
        await self._listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._sever()
        await self._close()

    async def down(self) -> None:
        """Sever every connection and refuse new ones (the port stops listening) until :meth:`up`."""
        self.is_up = False
        await self._close()
        await self._sever()

    async def up(self) -> None:
        if not self.is_up:
            self.is_up = True
            await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _sever(self) -> None:
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                sock = w.get_extra_info("socket")
                if sock is not None:  # RST rather than FIN: a dead bearer says nothing
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                w.transport.abort()
        self._writers.clear()
        for t in list(self._pipes):
            t.cancel()
        self._pipes.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.is_up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        tasks = {asyncio.ensure_future(self._pipe(reader, up_writer)), asyncio.ensure_future(self._pipe(up_reader, writer))}
        self._pipes |= tasks
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()
            self._pipes -= tasks

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
