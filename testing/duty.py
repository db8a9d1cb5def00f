"""The duty office running beside the alerts rig, with an operator, a viewer and an admin, for tests.

    async with duty_office(tmp_path, mosquitto, prefix) as office:   # alerts + duty's API on the real broker
        await office.cli("li", "warn", "issue", ...)                 # `yujing …` as li (an operator)
        phones(office.rig)                                           # who the Twilio stand-in texted

Used by tests/test_duty_office.py and tests/test_upstream_daemon.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import testing.alerts as harness
from duty.accounts import hash_password
from duty.service import serve as serve_duty
from simulators.twilio import Behaviour
from testing.alerts import Rig, running_alerts

ROOT = Path(__file__).resolve().parents[1]
CHIEF_PASSWORD = "chief-password-for-tests"


@dataclass
class Office:
    rig: Rig
    url: str
    tokens: dict[str, Path]
    state: dict[str, Any]

    async def cli(self, user: str, *args: str) -> tuple[int, str, str]:
        """`yujing …` as a child process, authenticated by the user's token file."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), "YUJING_URL": self.url,
               "YUJING_TOKEN_FILE": str(self.tokens[user])}
        env.pop("YUJING_TOKEN", None)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "yujing", *args, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()

    def audit(self) -> list[Any]:
        return list(reversed(self.state["office"].audit.entries(1000)))


@contextlib.asynccontextmanager
async def duty_office(tmp_path: Path, mosquitto: Any, prefix: str, speed: float = 60.0,
                      behaviours: dict[str, Behaviour] | None = None, alerts: dict[str, Any] | None = None,
                      upstream: dict[str, Any] | None = None, duty: dict[str, Any] | None = None
                      ) -> AsyncIterator[Office]:
    """The alerts rig's deployment plus a duty section (operator li, viewer wang by token; admin chief by
    password; ``duty`` adds to it), and the duty office serving it; ``upstream`` adds CAP sources."""
    tokens = {}
    for user in ("li", "wang"):
        tokens[user] = tmp_path / f"{user}.token"
        tokens[user].write_text(f"token-of-{user}-{prefix}-0123456789")
    section = {"port": 0, "client_id": f"duty-{prefix}", "sender_name": "忠县防汛抗旱指挥部",
               "accounts": [{"user": "li", "role": "operator", "token": {"file": str(tokens["li"])}},
                            {"user": "wang", "role": "viewer", "token": {"file": str(tokens["wang"])}},
                            {"user": "chief", "role": "admin", "password_hash": hash_password(CHIEF_PASSWORD)}],
               **(duty or {})}
    original = harness.write_config

    def with_duty(directory: Path, **kw: Any) -> Path:
        return original(directory, **kw, extra={"duty": section, **({"upstream": upstream} if upstream else {})})

    harness.write_config = with_duty  # the harness lays out the deployment; the duty section joins it
    try:
        async with running_alerts(tmp_path / "d", mqtt_port=mosquitto.port, prefix=prefix, speed=speed,
                                  alerts={"grouping": {"wait_s": 0}, **(alerts or {})}, behaviours=behaviours,
                                  default=Behaviour.answers_and_presses("1", after_s=5)) as rig:
            harness.write_config = original
            state: dict[str, Any] = {}
            ready = asyncio.Event()
            task = asyncio.create_task(serve_duty(rig.rt, ready=ready, state=state))
            await asyncio.wait_for(ready.wait(), 15)
            try:
                yield Office(rig, state["url"], tokens, state)
            finally:
                rig.rt.stop.set()
                await asyncio.wait_for(task, 10)
    finally:
        harness.write_config = original


def phones(rig: Rig, start: int = 0) -> set[str]:
    """Every number the stand-in texted (from its ``start``-th message on)."""
    return {m.to for m in rig.twilio.messages[start:]}
