"""The ``yujing`` command.

    yujing check CONFIG                      validate a deployment, start nothing
    yujing run CONFIG                        every part in one process
    yujing edge|collector|rules|alerts|duty CONFIG   one part alone (duty: the duty office's API)
    yujing warn issue|update|lift …, yujing warnings, yujing confirm …, yujing silence add|list|remove …
                                             the duty office from the command line (duty/cli.py)
    yujing console CONFIG                    the duty office's API and web console alone (as yujing duty)
    yujing rules test CONFIG --readings FILE  backtest rules on a CSV/JSON series
    yujing drill CONFIG SCENARIO --speed N --report DIR
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from yujing import __version__
from yujing import log as ylog
from yujing import systemd
from yujing.clock import Clock
from yujing.compose import Config, load_config
from yujing.errors import ConfigError, YujingError

if TYPE_CHECKING:
    from yujing.runtime import Runtime

log = logging.getLogger("yujing")

PARTS = ("edge", "collector", "rules", "alerts", "duty")


def _service(part: str) -> Callable[..., Awaitable[None]]:
    # the collector's part is its worker supervisor (collector/workers.py: in-process when one worker is meant)
    module = "collector.workers" if part == "collector" else f"{part}.service"
    return importlib.import_module(module).serve  # type: ignore[no-any-return]


async def run_parts(cfg: Config, parts: tuple[str, ...], *, speed: float | None = None,
                    duration_s: float | None = None, gateways: list[str] | None = None,
                    rt: "Runtime | None" = None, handle_signals: bool = True) -> None:
    """Start ``parts`` (and the embedded broker and simulators if configured) until ``rt.stop``.

    SIGTERM and SIGINT set the stop event; each part then flushes what it holds and returns.
    """
    from yujing.mqtt import embedded_broker
    from yujing.runtime import Runtime

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
        if cfg.mqtt.embedded:
            await stack.enter_async_context(embedded_broker(cfg.mqtt.host, cfg.mqtt.port))
        if sim is not None:
            simulators = importlib.import_module("simulators.service")
            await stack.enter_async_context(simulators.running(rt))
        failed: list[str] = []
        async with asyncio.TaskGroup() as tg:
            running = []
            for part in parts:
                kwargs: dict[str, Any] = {"gateways": gateways} if part == "edge" and gateways else {}
                if part == "alerts":
                    kwargs.update(_lent_token(cfg))
                running.append(tg.create_task(_supervised(part, _service(part)(rt, **kwargs), rt, failed), name=part))
            tg.create_task(systemd.supervise(rt.stop, "running " + " ".join(parts)), name="systemd")
            tg.create_task(_stop_deadline(rt, running), name="stop-deadline")
    if failed:
        raise YujingError(f"stopped because {', '.join(failed)} failed (see the log above)")
    log.info("stopped")


def _lent_token(cfg: Config) -> dict[str, Any]:
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


STOP_GRACE_S = 30.0


async def _stop_deadline(rt: "Runtime", running: list["asyncio.Task[None]"]) -> None:
    """After stop, give the parts STOP_GRACE_S real seconds to flush; then cancel the stragglers, loudly.

    What they hold is durable already (outbox, spool, state, notification log), so a forced stop loses
    nothing; a stop that never ends would leave systemd or the shell waiting for ever.
    """
    await rt.stop.wait()
    _, pending = await asyncio.wait(running, timeout=STOP_GRACE_S)
    if pending:  # say where they wait: the one clue to a stop that hangs
        me = asyncio.current_task()
        for task in sorted(asyncio.all_tasks() - {me}, key=lambda t: t.get_name()):
            log.error("still running at the stop deadline: %s waits in %s", task.get_name(), _where(task))
    for task in pending:
        log.error("%s did not stop within %.0f s: cancelling it", task.get_name(), STOP_GRACE_S)
        task.cancel()


def _where(task: "asyncio.Task[object]") -> str:
    """The await chain a task is suspended in, innermost last (its last three frames)."""
    frames, coro = [], task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " > ".join(frames[-3:]) or "?"


async def _supervised(part: str, work: Awaitable[None], rt: "Runtime", failed: list[str]) -> None:
    """Run one part; if it fails, log it at once and stop the others gracefully (they flush what they hold)."""
    try:
        await work
    except Exception:
        log.exception("%s failed; stopping every part", part)
        failed.append(part)
        rt.stop.set()


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"yujing: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="yujing", description="预警 Yujing: sensors to graded warnings, down to the household.")
    p.add_argument("--version", action="version", version=f"yujing {__version__}")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("check", help="validate a configuration and exit")
    c.add_argument("config")

    r = sub.add_parser("run", help="run every part in one process")
    r.add_argument("config")
    r.add_argument("--duration", type=float, metavar="SECONDS", help="stop by itself after this many real seconds")
    r.add_argument("--speed", type=float, help="clock speed (default: simulation.speed or 1)")

    for part in PARTS + ("console",):
        sp = sub.add_parser(part, help=f"run the {part} part alone" + (" (or: rules test ...)" if part == "rules" else "")
                            + (" (the duty office's API with the console's pages)" if part == "console" else ""))
        if part == "rules":
            sp.add_argument("args", nargs="+", metavar="CONFIG | test CONFIG --readings FILE")
            sp.add_argument("--readings", help="with 'test': a CSV or JSON series to replay")
            sp.add_argument("--json", action="store_true", help="with 'test': print JSON lines")
        else:
            sp.add_argument("config")
        if part == "edge":
            sp.add_argument("--gateway", action="append", help="run only this gateway (repeatable)")
        sp.add_argument("--duration", type=float, metavar="SECONDS")

    d = sub.add_parser("drill", help="replay a scenario through the whole chain, drill-marked, and report")
    d.add_argument("config")
    d.add_argument("scenario")
    d.add_argument("--speed", type=float, default=None, help="clock speed (default: the scenario's speed)")
    d.add_argument("--report", metavar="DIR", help="write report.html, report.json and charts here")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--live-broker", action="store_true",
                   help="the deployment's broker is running (the live system): use it, do not start one")

    importlib.import_module("duty.cli").add_commands(sub)  # warn, warnings, confirm, silence: requests to the API
    args = p.parse_args(argv)
    if getattr(args, "duty_command", None) is not None:
        return int(args.duty_command(args))
    ylog.setup(args.log_level.upper(), args.log_json)

    if args.cmd == "check":
        cfg = _load(args.config)
        # names a template provider could not carry (its cap per variable); importlib, as for the other parts
        long_names = importlib.import_module("alerts.templates").too_long(cfg)
        if long_names:
            print(f"yujing: {args.config}: alerts.aliyun: " + "; ".join(long_names), file=sys.stderr)
            return 2
        n_dev = sum(len(g.devices) for g in cfg.gateways)
        print(f"{args.config}: ok ({len(cfg.areas)} areas, {len(cfg.sites)} sites, "
              f"{len(cfg.gateways)} gateways, {n_dev} devices)")
        return 0
    if args.cmd == "rules" and args.args[0] == "test":
        if len(args.args) != 2 or not args.readings:
            p.error("usage: yujing rules test CONFIG --readings FILE")
        backtest = importlib.import_module("rules.backtest")
        return int(backtest.main(_load(args.args[1]), args.readings, as_json=args.json) or 0)
    if args.cmd == "drill":
        drill = importlib.import_module("simulators.drill")
        return int(asyncio.run(drill.main(_load(args.config), args.scenario, speed=args.speed,
                                          report=args.report, progress=not args.no_progress,
                                          live_broker=args.live_broker)) or 0)

    config_path = args.args[0] if args.cmd == "rules" else args.config
    if args.cmd == "rules" and len(args.args) != 1:
        p.error("usage: yujing rules CONFIG")
    cfg = _load(config_path)
    # the console is served by the duty office's application: `yujing console` runs that part
    parts = PARTS if args.cmd == "run" else ("duty",) if args.cmd == "console" else (args.cmd,)
    try:
        asyncio.run(run_parts(cfg, parts, speed=getattr(args, "speed", None), duration_s=args.duration,
                              gateways=getattr(args, "gateway", None)))
    except YujingError as exc:
        print(f"yujing: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
