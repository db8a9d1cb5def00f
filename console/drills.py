"""Starting a drill of a shipped scenario on the live system, from the console (operators; audited).

The drill is the real ``yujing drill`` (simulators/drill.py, the one drill runner) in a supervised child
process, told that the deployment's broker is the live one (``--live-broker``) so it uses it rather than start
a second broker on the same port. It runs on its own topic prefix (``<prefix>-drill-<run>``), drill-marked
(【演练】), with the drill's own participants reached through its own Twilio stand-in, and writes its report
under ``console.reports`` where the drills page lists it. A child process rather than a task in the daemon:
a drill's devices, stand-in and services then cannot disturb the live parts, and the console need not import
simulators/ (production code never does).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from duty.api import AUDIT, WHO, ApiError, _body, needs
from duty.config import Role

log = logging.getLogger("yujing.console.drills")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # a scenario is chosen by name, never by path


class State(StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    NOT_PASSED = "not-passed"
    FAILED = "failed"  # the drill could not run (bad scenario, crashed): see its log


@dataclass
class Run:
    run: str
    scenario: str
    user: str
    started_at: str
    state: State = State.RUNNING
    proc: asyncio.subprocess.Process | None = None

    def json(self) -> dict[str, Any]:
        return {"run": self.run, "scenario": self.scenario, "user": self.user, "started_at": self.started_at,
                "state": self.state.value}


class StartDrill(BaseModel):
    scenario: str = Field(max_length=64)
    speed: float | None = Field(default=None, gt=0, le=100_000)


class Drills:
    """The drills this console started (one at a time), supervised until they end or the console stops."""

    def __init__(self, config: Any, reports: Path) -> None:
        self.config, self.reports = config, reports
        self.runs: dict[str, Run] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def scenarios(self) -> list[str]:
        d = Path(self.config.base_dir) / "scenarios"
        return sorted(p.stem for p in d.glob("*.yaml") if NAME.match(p.stem)) if d.is_dir() else []

    def running(self) -> Run | None:
        return next((r for r in self.runs.values() if r.state is State.RUNNING), None)

    async def start(self, scenario: str, user: str, speed: float | None) -> Run:
        if scenario not in self.scenarios():
            raise ApiError(404, "not-found", f"no scenario {scenario!r} in this deployment")
        if (busy := self.running()) is not None:
            raise ApiError(409, "drill-running", f"drill {busy.run} ({busy.scenario}) is still running")
        now = datetime.now(timezone.utc)
        run = Run(f"console-{now:%Y%m%d%H%M%S}-{scenario}", scenario, user, now.isoformat(timespec="seconds"))
        out = self.reports / run.run
        out.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "yujing", "drill", str(self.config.base_dir),
                str(Path(self.config.base_dir) / "scenarios" / f"{scenario}.yaml"),
                "--report", str(out), "--no-progress", "--live-broker"]
        if speed:
            args += ["--speed", f"{speed:g}"]
        with open(out / "drill.log", "wb") as logf:
            run.proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL,
                                                            stdout=logf, stderr=logf)
        self.runs[run.run] = run
        task = asyncio.create_task(self._watch(run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("drill started", extra={"kv": {"run": run.run, "scenario": scenario, "user": user}})
        return run

    async def _watch(self, run: Run) -> None:
        assert run.proc is not None
        rc = await run.proc.wait()
        # yujing drill: 0 every expectation met, 1 not, anything else it could not run
        run.state = {0: State.PASSED, 1: State.NOT_PASSED}.get(rc, State.FAILED)
        log.info("drill ended", extra={"kv": {"run": run.run, "state": run.state.value, "rc": rc}})

    async def close(self) -> None:
        """The console stops: a drill still running is stopped with it (its broker topics are its own)."""
        for r in self.runs.values():
            if r.proc is not None and r.proc.returncode is None:
                r.proc.terminate()
        for t in list(self._tasks):
            try:
                await asyncio.wait_for(t, 10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                if (p := next((r.proc for r in self.runs.values() if r.proc and r.proc.returncode is None), None)):
                    p.kill()


DRILLS: web.AppKey[Drills] = web.AppKey("drills", Drills)


@needs(Role.OPERATOR)
async def start_drill(request: web.Request) -> web.Response:
    body: StartDrill = await _body(request, StartDrill)
    request[AUDIT]["target"] = body.scenario
    request[AUDIT]["detail"] = {"speed": body.speed}
    who = request[WHO]
    run = await request.app[DRILLS].start(body.scenario, who.user if who else "", body.speed)
    request[AUDIT]["detail"]["run"] = run.run
    return web.json_response(run.json(), status=202)


def install(app: web.Application, config: Any, reports: Path) -> Drills:
    drills = Drills(config, reports)
    app[DRILLS] = drills
    app.router.add_post("/api/v1/drills", start_drill)

    async def _stop(_: web.Application) -> None:
        await drills.close()
    app.on_cleanup.append(_stop)
    return drills
