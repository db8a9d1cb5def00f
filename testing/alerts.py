"""The alerts service against the Twilio stand-in, ready to be told a warning: for tests, the bench, drills.

    async with running_alerts(tmp_path, mqtt_port=1883, prefix="t1") as rig:
        await rig.publish(warning)
        await rig.twilio.wait_until(lambda: rig.twilio.messages_to("+86…"))

:func:`write_config` lays out a deployment directory from ``alerts/example`` (the chain, sites and
households) plus the MQTT, Twilio and alerts settings given, so a child process can run it too
(``python -m yujing alerts DIR``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import aiomqtt
import yaml

from alerts.pipeline import Pipeline
from alerts.running import Running
from simulators.twilio import Behaviour, TwilioStandIn
from testing.waits import wait_for
from yujing import topics
from yujing.clock import Clock
from yujing.compose import load_config
from yujing.config.people import Person
from yujing.model import Hazard, HazardWarning, Level, WarningState, utcnow
from yujing.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "alerts" / "example"  # the chain, sites and households
TOKEN = "harness-auth-token-0123456789"
# people of the example chain (alerts/example): the landslide site's monitor and responsible person, up the chain
MONITOR, SITE_RESP = "+8613911000050", "+8613911000051"
VILLAGE_RESP, VILLAGE_DEPUTY = "+8613911000020", "+8613911000021"
TOWN_RESP, TOWN_DUTY = "+8613911000011", "+8613911000010"
ACCOUNT = "AC" + "1" * 32


def write_config(directory: Path, *, mqtt_port: int, prefix: str, twilio_url: str, alerts: dict[str, Any] | None = None,
                 example: Path = EXAMPLE, token: str = TOKEN, extra: dict[str, Any] | None = None) -> Path:
    """A deployment directory: the example chain + ``local.yaml`` with the given settings."""
    directory.mkdir(parents=True, exist_ok=True)
    for f in example.iterdir():
        if f.suffix in (".yaml", ".csv"):
            shutil.copy(f, directory / f.name)
    (directory / "twilio.token").write_text(token)
    section: dict[str, Any] = {
        "twilio": {"account_sid": ACCOUNT, "auth_token": {"file": str(directory / "twilio.token")},
                   "from_number": "+8610123456789", "base_url": twilio_url, "backoff_s": 0.05},
        "webhook": {"host": "127.0.0.1", "port": 0},
        "households": "households.csv",
        "client_id": f"alerts-{prefix}",
    }
    for k, v in (alerts or {}).items():
        section[k] = {**section[k], **v} if isinstance(v, dict) and isinstance(section.get(k), dict) else v
    local = {"deployment": {"name": "alerts-test", "data_dir": str(directory / "var")},
             "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "topic_prefix": prefix}, "alerts": section,
             **(extra or {})}
    (directory / "local.yaml").write_text(yaml.safe_dump(local, allow_unicode=True, sort_keys=False))
    return directory


@dataclass
class Rig:
    twilio: TwilioStandIn
    rt: Runtime
    config_dir: Path
    running: Running | None = None  # what the service shows once wired (alerts/running.py)
    task: asyncio.Task | None = None

    @property
    def live(self) -> Running:
        assert self.running is not None, "the alerts service is not wired yet"
        return self.running

    @property
    def prefix(self) -> str:
        return self.rt.config.mqtt.topic_prefix

    async def publish(self, *warnings: HazardWarning) -> None:
        mq = self.rt.config.mqtt
        async with aiomqtt.Client(mq.host, mq.port, identifier=f"pub-{self.prefix}") as c:
            for w in warnings:
                await c.publish(topics.warnings(self.prefix, w.hazard.value, w.site), w.model_dump_json(), qos=1)

    def pipeline(self, kind: str = "real") -> Pipeline:
        return self.live.pipeline(kind)

    async def settled(self, timeout_s: float = 15.0) -> None:
        """Wait until nothing is queued or in flight (every notification decided so far was sent or failed)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            busy = self.live.busy()
            if busy == 0:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"alerts still busy after {timeout_s} s ({busy} notifications)")
            await asyncio.sleep(0.02)

    def events(self, kind: str = "real", what: str | None = None) -> list[tuple[str, str, str, str, str]]:
        return [e for e in self.pipeline(kind).nflog.timeline.all() if what is None or e[3] == what]


@contextlib.asynccontextmanager
async def running_alerts(directory: Path, *, mqtt_port: int, prefix: str, alerts: dict[str, Any] | None = None,
                         speed: float = 1.0, behaviours: dict[str, Behaviour] | None = None,
                         default: Behaviour | None = None, drill_recipients: list[Person] | None = None,
                         twilio: TwilioStandIn | str | None = None, verbose: bool = False,
                         clock: Clock | None = None, drill: bool = False) -> AsyncIterator[Rig]:
    clock = clock or Clock(speed)
    async with contextlib.AsyncExitStack() as stack:
        if twilio is None:
            twilio = await stack.enter_async_context(TwilioStandIn(
                auth_token=TOKEN, account_sid=ACCOUNT, behaviours=behaviours, default=default, clock=clock,
                verbose=verbose))
        url = twilio if isinstance(twilio, str) else twilio.base_url  # a str: a stand-in in another process
        write_config(directory, mqtt_port=mqtt_port, prefix=prefix, twilio_url=url, alerts=alerts)
        rt = Runtime(load_config(directory), clock, drill=drill)
        rig = Rig(twilio if isinstance(twilio, TwilioStandIn) else None, rt, directory)  # type: ignore[arg-type]
        ready = asyncio.Event()
        from alerts.service import serve

        def wired(running: Running) -> None:
            rig.running = running

        rig.task = asyncio.create_task(serve(rt, drill_recipients=drill_recipients, ready=ready, on_running=wired))
        done, _ = await asyncio.wait({rig.task, asyncio.ensure_future(ready.wait())}, timeout=15,
                                     return_when=asyncio.FIRST_COMPLETED)
        if rig.task in done:
            rig.task.result()  # raises what stopped it
        if not ready.is_set():
            raise TimeoutError("the alerts service did not subscribe within 15 s")
        try:
            yield rig
        finally:
            rt.stop.set()
            done, _ = await asyncio.wait({rig.task}, timeout=10)
            if not done:  # say where the service waits: the one clue to a stop that hangs (seen once under load)
                from yujing.stack import where
                me = asyncio.current_task()
                chains = "; ".join(f"{t.get_name()} in {where(t)}" for t in asyncio.all_tasks() if t is not me)
                rig.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rig.task
                raise TimeoutError(f"the alerts service did not stop within 10 s of stop; still running: {chains}")
            with contextlib.suppress(asyncio.CancelledError):
                await rig.task


def captured(tw: TwilioStandIn, path: str, **match: str) -> tuple[str, dict[str, str]]:
    """The last request the stand-in (as Twilio) sent to ``path`` whose form has ``match``: (url, form)."""
    for url, params, status in reversed(tw.callbacks):
        if url.split("?")[0].endswith(path) and all(params.get(k) == v for k, v in match.items()):
            assert status in (200, 204), (url, status)
            return url, dict(params)
    raise AssertionError(f"no request to {path} with {match}")


def warning(level: Level = Level.BLUE, version: int = 1, state: WarningState = WarningState.ISSUED, key: str = "",
            site: str = "LS-GONGHE-01", hazard: Hazard = Hazard.LANDSLIDE, drill: bool = False,
            evidence: list[str] | None = None) -> HazardWarning:
    """A landslide warning at the example chain's hazard point (or ``site``), as rules would publish it."""
    now = utcnow()
    return HazardWarning(key=key or f"{hazard}:{site}", version=version, hazard=hazard, level=level, state=state,
                         site=site, area="shibao.gonghe.g1" if site == "LS-GONGHE-01" else "shibao.xinle",
                         title="裂缝位移速率超阈值", evidence=evidence or ["裂缝计1 24小时位移 12.5 mm"],
                         values={"displacement_mm": 12.5}, issued_at=now - timedelta(minutes=5), updated_at=now,
                         drill=drill)


def _log(directory: Path) -> IO[bytes]:
    return open(directory / "alerts.log", "ab")  # appended to by every start: the test counts "subscribed"


async def start(directory: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with _log(directory) as stderr:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(sys.executable, "-m", "yujing", "alerts", str(directory),
                                                    cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=stderr)


async def subscribed(directory: Path, times: int = 1) -> None:
    log = directory / "alerts.log"
    await wait_for(lambda: log.exists() and log.read_text().count("alerts subscribed") >= times, 20,
                   "the alerts process to subscribe")
