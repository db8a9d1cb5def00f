"""The console's one read model over the live system, and the stream of its changes to browsers.

    live = Live(cfg, clock)
    async with live.running(stop):        # MQTT: retained warnings + heartbeats; the notification log
        live.board                        # sites, warnings in force, heartbeats (console/board.py)
        live.chain                        # the notification log, read-only (console/chain.py)
        with live.listen() as queue:      # what changed, as it changes (the SSE handler relays them)

Nothing is copied into a database of the console's own: warnings and heartbeats are what rules and the
gateways publish retained (so a console that starts late sees the present at once), progress and history
are read from the alerts' log when it commits, series from the store when a page asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import datetime
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiomqtt
from pydantic import ValidationError

from alerts.directory import Directory
from console.board import Board, warning_json
from console.chain import ChainLog, people_of
from yujing import topics
from yujing.clock import Clock
from yujing.compose import Config
from yujing.model import SHANGHAI, HazardWarning
from yujing.mqtt import client

log = logging.getLogger("yujing.console")

NFLOG_POLL_S = 0.2  # how often the notification log is asked whether it changed (a PRAGMA, no table read)
QUEUE_MAX = 1000  # a browser further behind than this is dropped; it reconnects and reloads the state


@dataclass
class Event:
    kind: str  # warning | sites | progress | heartbeat
    data: dict[str, Any]
    at: float  # time.monotonic() when the change reached the console (the bench measures from here)

    def sse(self) -> bytes:
        return f"event: {self.kind}\ndata: {json.dumps(self.data, ensure_ascii=False)}\n\n".encode()


class Live:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.board = Board(config)
        households = Directory.load(config).households
        self.chain = ChainLog(config.path(config.alerts.log, "alerts.sqlite"), people_of(config, households))
        self.tz = SHANGHAI
        self._listeners: set[asyncio.Queue[Event | None]] = set()
        self.connected = asyncio.Event()
        self._progress: dict[str, dict[str, Any]] = {}  # key -> last progress sent

    # ---- browsers ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def listen(self) -> Iterator[asyncio.Queue[Event | None]]:
        """A queue of every change from now on; ``None`` in it means: reconnect and reload the state."""
        q: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_MAX)
        self._listeners.add(q)
        try:
            yield q
        finally:
            self._listeners.discard(q)

    def _publish(self, kind: str, data: dict[str, Any]) -> None:
        # at_ms: when the change reached the console (wall clock), so a page can tell its own share of a delay
        ev = Event(kind, {**data, "at_ms": round(time.time() * 1000)}, time.monotonic())
        for q in list(self._listeners):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:  # too slow a reader: end its stream, the page reconnects and reloads
                self._listeners.discard(q)
                with contextlib.suppress(asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait(None)

    def close_listeners(self) -> None:
        for q in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)

    def _sites_event(self, site_ids: list[str]) -> None:
        if site_ids:
            self._publish("sites", {"sites": {s: self.board.states[s].as_json() for s in site_ids}})

    # ---- what comes in --------------------------------------------------------------------------
    def on_warning(self, topic: str, payload: bytes) -> None:
        if not payload:
            return  # an emptied retained slot: the key is in the payload only, so nothing to match; rare
        try:
            w = HazardWarning.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("console: a warning it cannot read", extra={"kv": {"topic": topic, "error": str(exc)[:200]}})
            return
        if w.drill:
            return  # a drill on the live prefix is never the live picture
        changed = self.board.put_warning(w)
        self._publish("warning", self.view(w))
        self._sites_event(changed)

    def on_status(self, topic: str, payload: bytes) -> None:
        if not payload:
            return
        try:
            status = json.loads(payload)
        except ValueError:
            return
        if not isinstance(status, dict) or status.get("drill"):
            return
        gw = topics.gateway_of(topic)
        changed = self.board.put_heartbeat(gw, status)
        self._publish("heartbeat", {"gateway": gw, "online": status.get("online"), "ts": status.get("ts"),
                                    "outbox_depth": status.get("outbox_depth")})
        self._sites_event(changed)

    def view(self, w: HazardWarning) -> dict[str, Any]:
        """A warning as the lists show it: the model, where it is, its source and its progress."""
        d = warning_json(w, self.tz)
        d["township"] = self.board.township_of(w)
        site = self.board.sites.get(w.site)
        d["site_name"] = site.name if site else ""
        d["progress"] = self.progress(w)
        return d

    def progress(self, w: HazardWarning) -> dict[str, Any]:
        p = self.chain.progress(w.id)
        now = self.clock.now()
        for u in p["unconfirmed"]:  # how long asked, on the daemon's clock (a drill's runs faster than the wall's)
            try:
                u["asked_s"] = max(0.0, (now - datetime.fromisoformat(u["asked_at"])).total_seconds())
            except (TypeError, ValueError):
                u["asked_s"] = None
        return p

    def poll_chain(self) -> None:
        """The log moved: send the progress of every warning in force whose progress changed."""
        if not self.chain.changed():
            return
        for w in list(self.board.warnings.values()):
            p = self.chain.progress(w.id)
            if p != self._progress.get(w.key):
                self._progress[w.key] = p
                self._publish("progress", {"key": w.key, "version": w.version, "progress": p})

    # ---- running ----------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self, stop: asyncio.Event) -> AsyncIterator[Live]:
        tasks = [asyncio.create_task(self._mqtt(stop), name="console-mqtt"),
                 asyncio.create_task(self._poll(stop), name="console-nflog")]
        try:
            yield self
        finally:
            self.close_listeners()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            self.chain.close()

    async def _poll(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_chain()
            except Exception:  # noqa: BLE001 -- a bad row must not stop the console; logged each time it changes
                log.exception("console: reading the notification log failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(NFLOG_POLL_S):
                    await stop.wait()

    async def _mqtt(self, stop: asyncio.Event) -> None:
        m = self.config.mqtt
        prefix = m.topic_prefix
        backoff = 0.5
        while not stop.is_set():
            try:
                async with client(m, f"{prefix}-console-{id(self):x}", clean_session=True) as c:
                    # heartbeats at QoS 0: periodic and retained, a lost one is replaced by the next; the
                    # warnings at QoS 1, as every other consumer of them
                    await c.subscribe([(topics.warnings(prefix), 1), (topics.status(prefix), 0)])
                    self.connected.set()
                    backoff = 0.5
                    async for msg in c.messages:
                        topic, payload = str(msg.topic), bytes(msg.payload or b"")
                        if topic.startswith(f"{prefix}/warnings/"):
                            self.on_warning(topic, payload)
                        elif topic.startswith(f"{prefix}/status/"):
                            self.on_status(topic, payload)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                log.warning("console: MQTT connection lost; retrying", extra={"kv": {"error": str(exc),
                                                                                     "retry_s": backoff}})
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await stop.wait()
                backoff = min(backoff * 2, 10.0)
