"""``python -m edge CONFIG [--gateway ID ...] [--speed N] [--drill]``: run only the edge agent (as on a gateway)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from edge.service import serve
from yujing import log as ylog
from yujing.clock import Clock
from yujing.compose import load_config
from yujing.runtime import Runtime


async def _main(args: argparse.Namespace) -> None:
    rt = Runtime(load_config(args.config), Clock(args.speed), drill=args.drill)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, rt.stop.set)
    await serve(rt, args.gateway or None)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m edge", description=__doc__)
    p.add_argument("config")
    p.add_argument("--gateway", action="append", help="run only this gateway (repeatable)")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--drill", action="store_true")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args()
    ylog.setup(args.log_level)
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
