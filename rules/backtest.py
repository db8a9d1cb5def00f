"""``yujing rules test CONFIG --readings FILE``: replay a series through the rules, print the warnings.

For drill organisers and rule authors: what would this deployment's rules have issued, and when?
Time is the readings' own: the clock ticks between readings (silence, fading fire alarms) at
``rules.tick_s`` (at least a minute), so a three-day series replays in a second or two.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TextIO

from rules.engine import Engine
from rules.series import load_series
from yujing.errors import ConfigError
from yujing.model import HazardWarning, Reading, local_time

if TYPE_CHECKING:  # the composed deployment (top floor); a type only, never imported at run time
    from yujing.compose import Config

MAX_TICKS_PER_GAP = 10_000


def replay(cfg: Config, readings: list[Reading], tick_s: float | None = None) -> list[HazardWarning]:
    """Every warning the rules issue over ``readings`` (fed in file order, ticking in between)."""
    engine = Engine(cfg)
    equipment = engine.packs.get("equipment")
    if equipment is not None:
        equipment.watch_only({r.sensor for r in readings})  # type: ignore[attr-defined]
    step = timedelta(seconds=max(tick_s or cfg.rules.tick_s, 60.0))
    out: list[HazardWarning] = []
    clock: datetime | None = None
    for r in readings:
        if clock is None:
            clock = r.ts
            out += engine.tick(clock)
        n = 0
        while clock + step <= r.ts and n < MAX_TICKS_PER_GAP:
            clock += step
            n += 1
            out += engine.tick(clock)
        clock = max(clock, r.ts)
        out += engine.feed(r)
    return out


def timeline(warnings: list[HazardWarning], tz: str, out: TextIO) -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    for w in warnings:
        print(f"{local_time(w.updated_at, zone)}  {w.state.chinese}  {w.level.chinese:<2}  {w.key} v{w.version}"
              f"{'  [演练]' if w.drill else ''}", file=out)
        if w.title:
            print(f"    {w.title}", file=out)
        for line in w.evidence:
            print(f"      · {line}", file=out)


def main(cfg: Config, readings_path: str, as_json: bool = False) -> int:
    try:
        readings = load_series(readings_path)
    except ConfigError as e:
        print(f"yujing rules test: {e}", file=sys.stderr)
        return 2
    engine_problems = Engine(cfg).problems()
    for p in engine_problems:
        print(f"note: {p}", file=sys.stderr)
    warnings = replay(cfg, readings)
    if as_json:
        for w in warnings:
            print(w.model_dump_json())
        return 0
    if readings:
        zone = cfg.deployment.timezone
        print(f"{readings_path}: {len(readings)} readings, {local_time(min(r.ts for r in readings))} .. "
              f"{local_time(max(r.ts for r in readings))} ({zone}); {len(warnings)} warning messages")
        try:
            timeline(warnings, zone, sys.stdout)
        except BrokenPipeError:  # piped into head: fine
            import os
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    else:
        print(f"{readings_path}: no readings")
    return 0
