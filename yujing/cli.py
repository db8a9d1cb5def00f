"""The ``yujing`` command.

    yujing check CONFIG                      validate a deployment, start nothing
    yujing run CONFIG                        every part in one process
    yujing edge|collector|rules|alerts|duty CONFIG   one part alone (duty: the duty office's API)
    yujing warn issue|update|lift …, yujing warnings, yujing confirm …, yujing silence add|list|remove …
                                             the duty office from the command line (duty/cli.py)
    yujing console CONFIG                    the duty office's API and web console alone (as yujing duty)
    yujing rules test CONFIG --readings FILE  backtest rules on a CSV/JSON series
    yujing drill CONFIG SCENARIO --speed N --report DIR

The parts are started by :mod:`yujing.stack`, the composition root this command and drills share.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys

from yujing import __version__
from yujing import log as ylog
from yujing.compose import Config, load_config
from yujing.errors import ConfigError, YujingError
from yujing.stack import PARTS, run_parts


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
