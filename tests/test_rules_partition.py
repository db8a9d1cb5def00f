"""The rules spread over several processes by gateway (``rules.partition``): a site's state is never split, every
gateway is judged by exactly one partition, and ``yujing rules`` starts and stops the partitions itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
import yaml
from conftest import terminate, wait_for

from rules.partition import groups, partition_of, share
from testing.rules import Service, Warnings, deployment, device, site, subscribe
from yujing import topics
from yujing.clock import Clock
from yujing.compose import Config
from yujing.model import Q, Reading, ReadingBatch
from yujing.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 7, 14, tzinfo=UTC)
GATEWAYS = [f"gw-{i}" for i in range(6)]


def doc(count: int, index: int | None = None, port: int = 1883, prefix: str = "yujing", data_dir: str = "var") -> dict:
    """Six gateways with a rain gauge each, partitioned ``count`` ways (a document: also written as YAML)."""
    partition = {"count": count} if index is None else {"count": count, "index": index}
    return {
        "deployment": {"name": f"part-{prefix}", "data_dir": data_dir},
        "mqtt": {"port": port, "topic_prefix": prefix},
        "areas": [{"id": "c1", "name": "县", "tier": "county"},
                  {"id": "v1", "name": "村", "tier": "village", "parent": "c1"}],
        "sites": [site(f"RG-{i}", "rain") for i in range(len(GATEWAYS))],
        "gateways": [{"id": g, "devices": [device(f"rg-{i}", f"RG-{i}", 300.0, quantity="rain_mm")]}
                     for i, g in enumerate(GATEWAYS)],
        "rules": {"rain": {"blue": {1: 10}, "yellow": {1: 1000}, "orange": {1: 2000}, "red": {1: 3000}},
                  "partition": partition},
    }


def config(**kw) -> Config:
    return Config.model_validate(doc(**kw))


def test_gateways_that_share_a_site_or_a_coupled_landslide_are_placed_together():
    cfg = deployment(
        [site("RG-1", "rain"), site("RG-2", "rain"), site("HP-1", "landslide", landslide={"rain_sites": ["RG-2"]}),
         site("RV-1", "river", river={"warning_m": 1.0, "guarantee_m": 2.0})],
        gateways=[{"id": "gw-b", "devices": [device("rg-1a", "RG-1", quantity="rain_mm")]},
                  {"id": "gw-a", "devices": [device("rg-1b", "RG-1", quantity="rain_mm")]},  # the same site
                  {"id": "gw-c", "devices": [device("rg-2", "RG-2", quantity="rain_mm")]},
                  {"id": "gw-d", "devices": [device("hp-1", "HP-1", quantity="displacement_mm")]},  # coupled to RG-2
                  {"id": "gw-e", "devices": [device("rv-1", "RV-1")]}])
    assert groups(cfg) == {"gw-a": "gw-a", "gw-b": "gw-a", "gw-c": "gw-c", "gw-d": "gw-c", "gw-e": "gw-e"}


def test_every_gateway_is_judged_by_exactly_one_partition_whatever_the_count():
    for count in (2, 3, 5):
        shares = [share(config(count=count, index=i)) for i in range(count)]
        owned = [g for s in shares for g in s.gateways]  # type: ignore[union-attr]
        assert sorted(owned) == sorted(GATEWAYS)
        assert all(s.sites == {f"RG-{GATEWAYS.index(g)}" for g in s.gateways} for s in shares)  # type: ignore


def test_the_placement_is_a_checksum_of_the_group_so_every_process_and_machine_computes_the_same():
    # pinned: Python's hash() is salted per process, and two partitions computing it would disagree
    assert [partition_of(g, 2) for g in GATEWAYS] == [0, 0, 0, 0, 1, 1]
    assert [partition_of(g, 3) for g in GATEWAYS] == [1, 1, 2, 0, 0, 2]


def test_a_partition_without_gateways_configured_is_refused_at_start(tmp_path):
    from rules.service import RulesService
    from yujing.errors import ConfigError

    cfg = deployment([site("RG-1", "rain")], rules={"partition": {"count": 2, "index": 0}}, data_dir=str(tmp_path))

    async def start() -> None:
        RulesService(Runtime(cfg, Clock(start=T0)))
    with pytest.raises(ConfigError, match="no gateways"):
        asyncio.run(start())


def test_an_index_at_or_past_the_count_is_a_config_error():
    with pytest.raises(ValueError, match="index 2 is not below count 2"):
        config(count=2, index=2)


async def publish_rain(port: int, prefix: str) -> None:
    """30 mm at each site (blue from 10 mm in an hour), each on its own gateway's topic."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"pub-{prefix}") as c:
        for i, gw in enumerate(GATEWAYS):
            r = Reading(id=f"{prefix}-{i}", site=f"RG-{i}", sensor=f"rg-{i}", quantity=Q.RAIN_MM.value, value=30.0,
                        unit="mm", ts=T0 + timedelta(minutes=i))
            await c.publish(topics.readings(prefix, gw), ReadingBatch(gateway=gw, readings=[r]).model_dump_json(),
                            qos=1)


async def test_two_partitions_on_one_broker_issue_each_sites_warning_once_and_keep_only_their_own_state(
        mosquitto, prefix, tmp_path):
    got, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix, got, ready))
    await ready.wait()
    rts = [Runtime(config(count=2, index=i, port=mosquitto.port, prefix=prefix, data_dir=str(tmp_path)),
                   Clock(start=T0)) for i in range(2)]
    try:
        async with Service(rts[0]), Service(rts[1]):
            await publish_rain(mosquitto.port, prefix)
            await wait_for(lambda: len(got.got) >= len(GATEWAYS), 15, "a warning for every site")
            await asyncio.sleep(0.5)  # a second copy of any, from the other partition, would arrive by now
    finally:
        sub.cancel()
    assert sorted(w.key for w in got.got) == sorted(f"rainstorm:RG-{i}" for i in range(len(GATEWAYS)))
    from rules.store import StateStore
    for i in range(2):
        mine = share(rts[i].config)
        with StateStore(tmp_path / f"rules.state.p{i}of2.sqlite") as store:
            gauges = {entity for pack, entity, _ in store.pack_states() if pack == "rain" and "\x1f" not in entity}
        assert gauges == {f"rg-{GATEWAYS.index(g)}" for g in mine.gateways}  # type: ignore[union-attr]


async def publish_more_rain(port: int, prefix: str, mm: float) -> None:
    """``mm`` more at each site, five minutes after its first reading (publish_rain)."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"pub2-{prefix}") as c:
        for i, gw in enumerate(GATEWAYS):
            r = Reading(id=f"{prefix}-more-{i}", site=f"RG-{i}", sensor=f"rg-{i}", quantity=Q.RAIN_MM.value,
                        value=mm, unit="mm", ts=T0 + timedelta(minutes=i + 5))
            await c.publish(topics.readings(prefix, gw), ReadingBatch(gateway=gw, readings=[r]).model_dump_json(),
                            qos=1)


@pytest.mark.parametrize("after", [3, 1])
async def test_a_new_partition_count_takes_the_old_partitions_state_over_warnings_in_force_and_all(
        mosquitto, prefix, tmp_path, after):
    from rules.service import session_id
    from rules.store import StateStore
    from testing.broker import session_present

    got, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix, got, ready))
    await ready.wait()

    def runtimes(count: int) -> list[Runtime]:
        out = []
        for i in range(count):
            d = doc(count=count, index=i if count > 1 else None, port=mosquitto.port, prefix=prefix,
                    data_dir=str(tmp_path))
            d["rules"]["rain"]["yellow"] = {1: 50}
            out.append(Runtime(Config.model_validate(d), Clock(start=T0)))
        return out
    try:
        two = runtimes(2)
        async with Service(two[0]), Service(two[1]):
            await publish_rain(mosquitto.port, prefix)  # 30 mm: blue at every site
            await wait_for(lambda: len(got.got) >= len(GATEWAYS), 15, "a blue warning for every site")
        now = runtimes(after)  # 3: every site but two moves to another partition; 1: one process judges all
        async with contextlib.AsyncExitStack() as running:
            for rt in now:
                await running.enter_async_context(Service(rt))
            # 30 mm more: 60 mm in the hour is yellow (from 50) only if the 30 mm the old partition judged counts,
            # and an upgrade (version 2) only if the new partition holds the old one's warning in force
            await publish_more_rain(mosquitto.port, prefix, 30.0)
            await wait_for(lambda: all(any(w.version == 2 for w in got.of(f"rainstorm:RG-{i}"))
                                       for i in range(len(GATEWAYS))), 15, "a second message for every site")
    finally:
        sub.cancel()
    for i in range(len(GATEWAYS)):  # (a warning still in an old outbox at the stop is sent again: at least once)
        seen = [(w.level.value, w.state.value, w.version) for w in got.of(f"rainstorm:RG-{i}")]
        assert sorted(set(seen)) == [("blue", "issued", 1), ("yellow", "upgraded", 2)], seen
    names = sorted(p.name for p in tmp_path.glob("rules.state*.sqlite"))
    layout = [f"rules.state.p{i}of{after}.sqlite" for i in range(after)] if after > 1 else ["rules.state.sqlite"]
    assert names == layout, "the old layout's files are removed"
    for rt in now:
        mine = share(rt.config)
        with StateStore(tmp_path / f"rules.state{'.' + mine.suffix if mine else ''}.sqlite") as store:
            keys = {k for k, _ in store.lifecycles()}
        assert keys == {f"rainstorm:RG-{GATEWAYS.index(g)}" for g in (mine.gateways if mine else GATEWAYS)}
    cfg = now[0].config
    assert not any(session_present(mosquitto.port, session_id(cfg, (i, 2))) for i in range(2)), \
        "the old partitions' sessions are ended"


@pytest.mark.timeout(90)
async def test_yujing_rules_starts_a_process_per_partition_and_stops_them_all(mosquitto, prefix, tmp_path):
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "deployment.yaml").write_text(yaml.safe_dump(
        doc(count=2, port=mosquitto.port, prefix=prefix, data_dir=str(tmp_path / "var")), allow_unicode=True))
    log = tmp_path / "rules.log"
    got, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix, got, ready))
    await ready.wait()
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "yujing", "rules", str(cfg_dir), cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
            stderr=err, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        await wait_for(lambda: log.read_text(errors="replace").count("rules: subscribed") == 2, 30,
                       "both partitions subscribed")
        await publish_rain(mosquitto.port, prefix)
        await wait_for(lambda: len(got.got) >= len(GATEWAYS), 15, "a warning for every site")
    finally:
        sub.cancel()
        await terminate(proc, 20.0)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text[-2000:]
    assert sorted(w.key for w in got.got) == sorted(f"rainstorm:RG-{i}" for i in range(len(GATEWAYS)))
    assert sorted(p.name for p in (tmp_path / "var").glob("rules.state.*.sqlite")) == [
        "rules.state.p0of2.sqlite", "rules.state.p1of2.sqlite"]
    assert "did not stop" not in text and "restarting" not in text


@pytest.mark.timeout(90)
async def test_a_partition_that_dies_is_started_again_and_judges_what_arrived_meanwhile(mosquitto, prefix, tmp_path):
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "deployment.yaml").write_text(yaml.safe_dump(
        doc(count=2, port=mosquitto.port, prefix=prefix, data_dir=str(tmp_path / "var")), allow_unicode=True))
    log = tmp_path / "rules.log"
    got, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix, got, ready))
    await ready.wait()
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "yujing", "rules", str(cfg_dir), cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
            stderr=err, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        await wait_for(lambda: log.read_text(errors="replace").count("rules: subscribed") == 2, 30,
                       "both partitions subscribed")
        pids = dict(re.findall(r"partition started partition=(\d) of=2 pid=(\d+)", log.read_text(errors="replace")))
        os.kill(int(pids["1"]), signal.SIGKILL)
        await wait_for(lambda: "partition exited; restarting" in log.read_text(errors="replace"), 15, "the restart")
        await publish_rain(mosquitto.port, prefix)  # partition 1's share waits in its persistent session
        await wait_for(lambda: len(got.got) >= len(GATEWAYS), 30, "a warning for every site")
        await wait_for(lambda: log.read_text(errors="replace").count("rules: subscribed") == 3, 15,
                       "the new partition 1 subscribed")
    finally:
        sub.cancel()
        await terminate(proc, 20.0)
    assert proc.returncode == 0, log.read_text(errors="replace")[-2000:]
    assert sorted(w.key for w in got.got) == sorted(f"rainstorm:RG-{i}" for i in range(len(GATEWAYS)))
