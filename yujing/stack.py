"""The parts of a deployment running in one process: the one composition root of ``yujing run`` and of drills.

    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(broker(cfg.mqtt))   # the embedded broker, if the deployment has one
        async with asyncio.TaskGroup() as tg:
            parts = Parts(tg, rt)
            parts.start("collector"); parts.start("alerts", **alerts_kwargs(cfg))
            ...
            late = await parts.stop()                        # stop, STOP_GRACE_S to flush, then cancel
        parts.raise_if_failed()

:mod:`yujing.compose` composes a deployment's configuration; this module starts its parts from it. Each part
is ``<part>.service.serve(rt, **kwargs)``, run supervised: one that fails is logged at once and stops the
others, which flush what they hold. ``yujing run`` (:func:`run_parts`) and a drill
(:mod:`simulators.drill`) both start, supervise and stop their parts here, the drill on its own clock, prefix
and sessions. Like ``yujing/cli.py`` and ``yujing/compose.py`` this is the top floor: it may import anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from yujing import systemd
from yujing.clock import Clock
from yujing.config.mqtt import MqttConfig
from yujing.errors import YujingError
from yujing.runtime import Runtime

if TYPE_CHECKING:
    from yujing.compose import Config

log = logging.getLogger("yujing")

PARTS = ("edge", "collector", "rules", "alerts", "duty")
# After stop, the parts flush within this many real seconds; then the stragglers are cancelled, loudly. What
# they hold is durable already (outbox, spool, state, notification log), so a forced stop loses nothing; a
# stop that never ended would leave systemd, the shell or a drill waiting for ever.
STOP_GRACE_S = 30.0


def serve_of(part: str) -> Callable[..., Awaitable[None]] | None:
    """``<part>.service.serve``, or None if this build has no such part (a drill says what it could not run).

    The collector's is its worker supervisor's (collector/workers.py), which runs the collector in this process
    when one worker is meant (always in a drill: its scenario clock lives here)."""
    name = "collector.workers" if part == "collector" else f"{part}.service"
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        if exc.name not in (part, f"{part}.service", name):
            raise  # the part is there but something it needs is not: that is a fault, not a smaller build
        return None
    return module.serve  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def broker(mqtt: MqttConfig, *, live: bool = False) -> AsyncIterator[None]:
    """The deployment's embedded broker (amqtt, the demo's) while inside, unless ``live``: the live system's
    broker is already running there (a drill started beside it), so starting one on its port would fail."""
    if not mqtt.embedded or live:
        yield
        return
    from yujing.mqtt import embedded_broker

    async with embedded_broker(mqtt.host, mqtt.port):
        yield


def alerts_kwargs(cfg: "Config") -> dict[str, Any]:
    """Against a Twilio stand-in (``base_url`` set) with no auth token to be had, the stand-in's own (the demo,
    or ``yujing alerts`` beside ``python -m simulators.twilio``). Decided here, at the top: production code
    never imports a simulator."""
    twilio = cfg.alerts.twilio
    if twilio.base_url is None:
        return {}
    try:
        if twilio.auth_token is not None:
            twilio.auth_token.get()
            return {}
    except LookupError:
        pass
    from simulators.twilio_records import DEFAULT_TOKEN

    log.warning("no Twilio auth token; using the stand-in's (demo only)", extra={"kv": {"base_url": twilio.base_url}})
    return {"auth_token": DEFAULT_TOKEN}


class Parts:
    """Parts running as tasks of one task group, each supervised; stopped together."""

    def __init__(self, tg: asyncio.TaskGroup, rt: Runtime) -> None:
        self.tg, self.rt = tg, rt
        self.tasks: list[asyncio.Task[None]] = []
        self.failed: list[str] = []

    def start(self, part: str, **kwargs: Any) -> asyncio.Task[None] | None:
        """Start ``part`` (None if this build has none). If it fails, the others are stopped gracefully."""
        serve = serve_of(part)
        if serve is None:
            return None
        task = self.tg.create_task(supervised(part, serve(self.rt, **kwargs), self.rt, self.failed), name=part)
        self.tasks.append(task)
        return task

    async def stop(self, grace_s: float | None = None) -> list[str]:
        """Set stop and give the parts ``grace_s`` (STOP_GRACE_S) real seconds to flush and return; cancel the
        stragglers, logging where each task waits. Returns the names of the parts that had to be cancelled."""
        self.rt.stop.set()
        return await stop_deadline(self.rt, self.tasks, grace_s)

    def raise_if_failed(self) -> None:
        if self.failed:
            raise YujingError(f"stopped because {', '.join(self.failed)} failed (see the log above)")


async def supervised(part: str, work: Awaitable[None], rt: Runtime, failed: list[str]) -> None:
    """Run one part; if it fails, log it at once and stop the others gracefully (they flush what they hold)."""
    try:
        await work
    except Exception:
        log.exception("%s failed; stopping every part", part)
        failed.append(part)
        rt.stop.set()


async def stop_deadline(rt: Runtime, running: list["asyncio.Task[None]"], grace_s: float | None = None) -> list[str]:
    """Once stop is set, give ``running`` ``grace_s`` (STOP_GRACE_S) to return; then cancel the stragglers."""
    grace_s = STOP_GRACE_S if grace_s is None else grace_s
    await rt.stop.wait()
    _, pending = await asyncio.wait(running, timeout=grace_s) if running else (set(), set())
    if pending:  # say where they wait: the one clue to a stop that hangs
        me = asyncio.current_task()
        for task in sorted(asyncio.all_tasks() - {me}, key=lambda t: t.get_name()):
            log.error("still running at the stop deadline: %s waits in %s", task.get_name(), where(task))
    for task in pending:
        log.error("%s did not stop within %.0f s: cancelling it", task.get_name(), grace_s)
        task.cancel()
    return sorted(task.get_name() for task in pending)


def where(task: "asyncio.Task[object]") -> str:
    """The await chain a task is suspended in, innermost last (its last three frames)."""
    frames, coro = [], task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " > ".join(frames[-3:]) or "?"


async def run_parts(cfg: "Config", parts: tuple[str, ...], *, speed: float | None = None,
                    duration_s: float | None = None, gateways: list[str] | None = None,
                    rt: Runtime | None = None, handle_signals: bool = True) -> None:
    """``yujing run`` and ``yujing <part>``: start ``parts`` (and the embedded broker and simulators if
    configured) until ``rt.stop``. SIGTERM and SIGINT set the stop event; each part then flushes and returns."""
    sim = cfg.simulation
    if rt is None:
        rt = Runtime(cfg, Clock(speed or (sim.speed if sim else 1.0)))
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, rt.stop.set)
    if duration_s:
        loop.call_later(duration_s, rt.stop.set)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(broker(cfg.mqtt))
        if sim is not None:
            simulators = importlib.import_module("simulators.service")
            await stack.enter_async_context(simulators.running(rt))
        async with asyncio.TaskGroup() as tg:
            running = Parts(tg, rt)
            for part in parts:
                kwargs: dict[str, Any] = {"gateways": gateways} if part == "edge" and gateways else {}
                if part == "alerts":
                    kwargs.update(alerts_kwargs(cfg))
                if running.start(part, **kwargs) is None:
                    raise YujingError(f"no {part} in this build (its module {part}.service is missing)")
            tg.create_task(systemd.supervise(rt.stop, "running " + " ".join(parts)), name="systemd")
            tg.create_task(stop_deadline(rt, running.tasks), name="stop-deadline")
    running.raise_if_failed()
    log.info("stopped")
