"""Durability: the rules service SIGKILLed at random points of a reading stream ends where an unbroken run ends.

The service runs as its own process (``python -m yujing rules DIR``) against the real Mosquitto; a gateway
stand-in streams rain and reservoir readings (QoS 1, acknowledged by the broker) that push warnings up
through several levels, down again and off (解除). The process is killed 3 times at random points (the seed
is printed; ``RULES_KILL_SEED`` replays one) and restarted at once, while the stream goes on.

The reference is the same readings fed to an in-process :class:`Engine` with no kill. Every warning
message must be the same, version for version: a reading whose message was acknowledged but whose effect
was not yet saved would be lost (lower totals, a missed upgrade), one counted twice would raise them, and
a state restored behind the warnings already issued would issue versions again with other content.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
import yaml
from conftest import terminate, wait_for

from rules.engine import Engine
from yujing import topics
from yujing.compose import load_config
from yujing.model import HazardWarning, Q, Reading, ReadingBatch

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "rules" / "examples" / "demo"
T0 = datetime(2026, 7, 14, tzinfo=UTC)
STEPS = 22 * 12  # a reading of each gauge every 5 minutes for 22 hours
KILLS = 3


def stream() -> list[list[Reading]]:
    """Rain that reaches orange, then red, stops (downgrades, lifts) and bursts again at the very end, so
    the last warnings come from the last reading; a reservoir rising through its levels and falling."""
    out = []
    for i in range(STEPS + 1):
        h = i / 12
        mm = 60.0 if i == STEPS else 1.5 if h < 3 else 4.0 if h < 5 else 0.0
        level = 311.0 + 0.5 * min(h, 8) - 0.5 * max(0.0, h - 8)
        ts = T0 + timedelta(minutes=5 * i)
        out.append([
            Reading(id=f"rain-{i}", site="RG-SQ-01", sensor="rg-sq-01", quantity=Q.RAIN_MM.value, value=mm,
                    unit="mm", ts=ts, gateway="gw-xl"),
            Reading(id=f"level-{i}", site="SK-GY-01", sensor="sk-gy-01", quantity=Q.LEVEL_M.value,
                    value=round(level, 3), unit="m", ts=ts, gateway="gw-xl")])
    return out


def write_config(directory: Path, port: int, prefix: str) -> Path:
    cfg_dir = directory / "cfg"
    shutil.copytree(DEMO, cfg_dir)
    doc = yaml.safe_load((cfg_dir / "deployment.yaml").read_text())
    doc["deployment"].update(name=prefix, data_dir=str(directory / "var"))
    doc["mqtt"].update(port=port, topic_prefix=prefix)
    (cfg_dir / "deployment.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    return cfg_dir


async def start(cfg_dir: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as err:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(sys.executable, "-m", "yujing", "rules", str(cfg_dir), cwd=ROOT,
                                                    env=env, stdout=asyncio.subprocess.DEVNULL, stderr=err)


def subscriptions(log: Path) -> int:
    return log.read_text(errors="replace").count("rules: subscribed") if log.exists() else 0


@pytest.mark.timeout(90)
async def test_sigkill_at_random_points_of_a_stream_loses_and_duplicates_nothing(mosquitto, prefix, tmp_path):
    seed = int(os.environ.get("RULES_KILL_SEED") or random.randrange(2**32))
    print(f"RULES_KILL_SEED={seed}")
    rng = random.Random(seed)
    batches = stream()
    cfg_dir = write_config(tmp_path, mosquitto.port, prefix)
    reference: dict[tuple[str, int], HazardWarning] = {}
    engine = Engine(load_config(cfg_dir))
    for batch in batches:
        for r in batch:
            reference.update(((w.key, w.version), w) for w in engine.feed(r))
    assert {w.state.value for w in reference.values()} >= {"issued", "upgraded", "downgraded", "lifted"}

    got: dict[tuple[str, int], set[str]] = {}
    listening = asyncio.Event()

    async def listen() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"w-{prefix}") as c:
            await c.subscribe(topics.warnings(prefix), qos=1)
            listening.set()
            async for msg in c.messages:
                w = HazardWarning.model_validate_json(msg.payload)
                got.setdefault((w.key, w.version), set()).add(w.model_dump_json())

    sent = 0

    async def gateway() -> None:
        nonlocal sent
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"g-{prefix}") as c:
            for batch in batches:
                await c.publish(topics.readings(prefix, "gw-xl"),
                                ReadingBatch(gateway="gw-xl", readings=batch).model_dump_json(), qos=1)
                sent += 1
                await asyncio.sleep(0.025)

    log = tmp_path / "rules.log"
    listener = asyncio.create_task(listen())
    await asyncio.wait_for(listening.wait(), 10)
    proc = await start(cfg_dir, log)
    publisher: asyncio.Task | None = None
    try:
        await wait_for(lambda: subscriptions(log) >= 1, 20, "the rules process to subscribe")
        publisher = asyncio.create_task(gateway())
        points = sorted(rng.sample(range(20, STEPS - 20), KILLS))
        print(f"kills after message {points}")
        for n, point in enumerate(points, start=1):
            await wait_for(lambda p=point: sent >= p or publisher.done(), 30, f"message {point} to be sent")
            await asyncio.sleep(rng.uniform(0, 0.2))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            proc = await start(cfg_dir, log)
            await wait_for(lambda n=n: subscriptions(log) >= n + 1, 20, f"the rules process to subscribe again ({n})")
        await asyncio.wait_for(publisher, 30)
        # the last reading issues the last warnings: once they are here, every reading has been judged
        try:
            await wait_for(lambda: set(got) >= set(reference), 30, "every warning of the unbroken run")
        except AssertionError as e:
            raise AssertionError(f"{e}; missing {sorted(set(reference) - set(got))}, "
                                 f"extra {sorted(set(got) - set(reference))}") from None
    finally:
        if publisher is not None:
            publisher.cancel()
        await terminate(proc)
        listener.cancel()
    assert subscriptions(log) == KILLS + 1
    twice = {k: v for k, v in got.items() if len(v) > 1}
    assert twice == {}, f"(key, version) published with different content: {twice}"
    assert set(got) == set(reference), f"extra: {set(got) - set(reference)}"
    for k, w in reference.items():
        assert HazardWarning.model_validate_json(next(iter(got[k]))) == w, k
