"""Rigs of the fault tests: a 4G link that can be cut, three gateways streaming, a gateway watched through
broker restarts, a retained report awaited.

    async with Link(broker.port) as link: ... await link.cut() ... await link.restore()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Self

import aiomqtt

from simulators.ports import free_port
from testing.devices import deployment
from testing.edge import gauges, sources
from testing.waits import wait_for
from yujing import topics
from yujing.compose import Config
from yujing.model import ReadingBatch


class Link:
    """A TCP proxy to ``target_port`` that can be cut (live connections reset, new ones refused) and restored."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.accepted = 0  # connections accepted while up: each is one (re)connect of the agent
        self.up = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Self:
        await self._listen()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.cut()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.accepted += 1
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        """The link drops: stop listening (new connections refused) and reset every live connection."""
        self.up = False
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        self.up = True
        if self._server is None:
            await self._listen()


GATEWAYS = ["gwa", "gwb", "gwc"]


def three_gateways(directory, broker_port: int, prefix: str, n: int, interval_s: float) -> tuple[Config, dict]:
    """Three gateways of ``n`` gauges each (device and site ids unique across them) that reconnect quickly,
    and the simulated devices' value sources."""
    gws, srcs = [], {}
    for g in GATEWAYS:
        devices = gauges(free_port(), n, interval_s)
        for d in devices:
            d["id"], d["site"] = f"{g}-{d['id']}", f"{g}-{d['site']}"
        gws.append({"id": g, "heartbeat_s": 2, "devices": devices,
                    "uplink": {"reconnect_s": 0.2, "reconnect_max_s": 0.5, "publish_timeout_s": 2}})
        srcs |= {f"{g}-{k}": v for k, v in sources(n).items()}
    return deployment(directory, gws, mqtt_port=broker_port, prefix=prefix), srcs


async def retained(port: int, topic: str, pred, timeout_s: float = 15.0) -> dict:
    """The retained message on ``topic`` once ``pred(payload)`` holds (fresh subscriptions until then)."""
    last: dict = {}

    async def latest() -> bool:
        nonlocal last
        async with aiomqtt.Client("127.0.0.1", port) as c:
            await c.subscribe(topic, qos=1)
            try:
                async with asyncio.timeout(1.0):
                    async for msg in c.messages:
                        if msg.retain:
                            last = json.loads(msg.payload)
                        break
            except TimeoutError:
                pass
        return bool(last) and pred(last)

    await wait_for(latest, timeout_s, f"retained {topic} matching ({last})")
    return last


class Watch:
    """Every reading id and every heartbeat of one gateway, through broker restarts (persistent session)."""

    def __init__(self, port: int, prefix: str, gateway: str) -> None:
        self.port, self.prefix, self.gateway = port, prefix, gateway
        self.ids: list[str] = []
        self.beats: list[tuple[float, dict]] = []  # (monotonic arrival, heartbeat)
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"w-{self.prefix}",
                                          clean_session=False) as c:
                    await c.subscribe(topics.readings(self.prefix, self.gateway), qos=1)
                    await c.subscribe(topics.status(self.prefix, self.gateway), qos=1)
                    self.subscribed.set()
                    async for msg in c.messages:
                        if msg.topic.matches(topics.status(self.prefix, self.gateway)):
                            self.beats.append((time.monotonic(), json.loads(msg.payload)))
                        else:
                            self.ids.extend(r.id for r in ReadingBatch.model_validate_json(msg.payload).readings)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)
