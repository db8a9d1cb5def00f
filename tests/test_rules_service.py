"""The rules service through the real Mosquitto: readings in, warnings out, state kept across restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
from conftest import wait_for
from testing.rules import Service, subscribe, Warnings

from yujing import topics
from yujing.clock import Clock
from yujing.compose import Config, load_config
from yujing.model import HazardWarning, Level, Q, Reading, ReadingBatch, WarningState, new_id
from yujing.runtime import Runtime

DEMO = Path(__file__).resolve().parent.parent / "rules" / "examples" / "demo"
T0 = datetime(2026, 7, 14, 0, 0, tzinfo=UTC)


def demo_config(tmp_path: Path, port: int, prefix: str) -> Config:
    cfg = load_config(DEMO)
    return cfg.model_copy(update={
        "mqtt": cfg.mqtt.model_copy(update={"port": port, "topic_prefix": prefix}),
        "deployment": cfg.deployment.model_copy(update={"data_dir": str(tmp_path / "var"), "name": prefix}),
    })


def counter(value: float, ts: datetime, drill: bool = False) -> Reading:
    return Reading(id=new_id(), site="RG-SQ-01", sensor="rg-sq-01", quantity=Q.RAIN_COUNT_MM.value,
                   value=value, unit="mm", ts=ts, gateway="gw-xl", drill=drill)


def steady_rain(mm_per_h: float, hours: int, start: float = 100.0, step_min: int = 30) -> list[Reading]:
    """A counter reading every ``step_min`` minutes from T0 for ``hours`` hours."""
    n = hours * 60 // step_min
    return [counter(start + mm_per_h * i * step_min / 60, T0 + timedelta(minutes=i * step_min)) for i in range(n + 1)]


async def publish(port: int, prefix: str, readings: list[Reading], batch: int = 10) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"p-{prefix}") as c:
        for i in range(0, len(readings), batch):
            body = ReadingBatch(gateway="gw-xl", readings=readings[i:i + batch]).model_dump_json()
            await c.publish(topics.readings(prefix, "gw-xl"), body, qos=1)

@contextlib.asynccontextmanager
async def serving(rt: Runtime, port: int, prefix: str) -> AsyncIterator[Warnings]:
    """The rules service running on ``rt``, and the warnings a subscriber (subscribed before it) receives."""
    got, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(port, prefix, got, ready))
    await ready.wait()
    try:
        async with Service(rt):
            yield got
    finally:
        sub.cancel()


async def test_rain_gauge_reaching_50mm_in_12h_publishes_a_blue_rainstorm_warning(mosquitto, prefix, tmp_path):
    cfg = demo_config(tmp_path, mosquitto.port, prefix)
    rt = Runtime(cfg, Clock(start=T0 + timedelta(hours=12)))
    async with serving(rt, mosquitto.port, prefix) as got:
        await publish(mosquitto.port, prefix, steady_rain(4.5, 12))  # 54 mm in 12 h, 27 mm in 6 h
        await wait_for(lambda: got.of("rainstorm:RG-SQ-01"), 10, "a rainstorm warning")
        w = got.of("rainstorm:RG-SQ-01")[0]
        assert (w.level, w.state, w.version, w.area) == (Level.BLUE, WarningState.ISSUED, 1, "zx.xl.sq")
        assert w.values["rain_12h_mm"] >= 50.0
        assert any("12小时累计雨量" in e and "蓝色阈值 50.0 mm" in e for e in w.evidence), w.evidence
        assert not w.drill


async def test_garbage_on_the_readings_topic_is_counted_and_does_not_stop_the_service(mosquitto, prefix, tmp_path):
    from prometheus_client import REGISTRY
    cfg = demo_config(tmp_path, mosquitto.port, prefix)
    rt = Runtime(cfg, Clock(start=T0 + timedelta(hours=12)))
    before = REGISTRY.get_sample_value("yujing_rules_rejected_total", {"reason": "json"}) or 0
    async with serving(rt, mosquitto.port, prefix) as got:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
            await c.publish(topics.readings(prefix, "gw-xl"), b"{not json", qos=1)
            await c.publish(topics.readings(prefix, "gw-xl"), json.dumps({"id": "x"}), qos=1)
        await publish(mosquitto.port, prefix, steady_rain(20, 3))  # 60 mm in 3 h: orange
        await wait_for(lambda: got.of("rainstorm:RG-SQ-01"), 10, "a rainstorm warning after garbage")
        assert got.of("rainstorm:RG-SQ-01")[-1].level == Level.ORANGE
        after = REGISTRY.get_sample_value("yujing_rules_rejected_total", {"reason": "json"})
        assert after == before + 1


def rain_mm(mm: float, minutes: float, rid: str | None = None, drill: bool = False) -> Reading:
    return Reading(id=rid or new_id(), site="RG-SQ-01", sensor="rg-sq-01", quantity=Q.RAIN_MM.value, value=mm,
                   unit="mm", ts=T0 + timedelta(minutes=minutes), gateway="gw-xl", drill=drill)


async def test_readings_sent_while_the_service_is_down_are_judged_when_it_returns_without_refiring(
        mosquitto, prefix, tmp_path):
    cfg = demo_config(tmp_path, mosquitto.port, prefix)
    got, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix, got, ready))
    await ready.wait()
    try:
        async with Service(Runtime(cfg, Clock(start=T0))):
            await publish(mosquitto.port, prefix, [rain_mm(25.0, 10), rain_mm(25.0, 20)])  # 50 mm: orange
            await wait_for(lambda: got.of("rainstorm:RG-SQ-01"), 10, "the orange warning")
        # down: the persistent session keeps what the gateway sends meanwhile
        await publish(mosquitto.port, prefix, [rain_mm(25.0, 30), rain_mm(25.0, 40)])  # 100 mm in 3 h: red
        async with Service(Runtime(cfg, Clock(start=T0))):
            await wait_for(lambda: len(got.of("rainstorm:RG-SQ-01")) >= 2, 10, "the upgrade after restart")
            await asyncio.sleep(0.3)  # nothing else may follow
        assert [(w.version, w.state, w.level) for w in got.of("rainstorm:RG-SQ-01")] == [
            (1, WarningState.ISSUED, Level.ORANGE), (2, WarningState.UPGRADED, Level.RED)]
    finally:
        sub.cancel()


async def test_a_reading_sent_twice_is_counted_once(mosquitto, prefix, tmp_path):
    cfg = demo_config(tmp_path, mosquitto.port, prefix)
    got, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix, got, ready))
    await ready.wait()
    try:
        async with Service(Runtime(cfg, Clock(start=T0))):
            r = rain_mm(30.0, 10, rid="same-id")
            await publish(mosquitto.port, prefix, [r])
            await publish(mosquitto.port, prefix, [r])  # the edge outbox re-sent it
            await publish(mosquitto.port, prefix, [rain_mm(20.0, 20)])  # 50 mm: orange (60 if double-counted)
            await wait_for(lambda: got.of("rainstorm:RG-SQ-01"), 10, "the orange warning")
        assert got.of("rainstorm:RG-SQ-01")[0].values["rain_3h_mm"] == 50.0
    finally:
        sub.cancel()


async def test_warnings_left_in_the_outbox_by_a_crash_are_published_on_start_in_order(mosquitto, prefix, tmp_path):
    from rules.store import StateStore
    from yujing.model import Hazard
    cfg = demo_config(tmp_path, mosquitto.port, prefix)
    left = [HazardWarning(key="rainstorm:RG-SQ-01", version=v, hazard=Hazard.RAINSTORM, level=Level.RED,
                          state=WarningState.UPGRADED, site="RG-SQ-01", area="zx.xl.sq", issued_at=T0, updated_at=T0)
            for v in range(1, 21)]  # more than the publishing window: several in flight at once
    with StateStore(cfg.path(cfg.rules.state, "rules.state.sqlite")) as store:
        store.save({}, {}, left)
    got, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix, got, ready))
    await ready.wait()
    try:
        async with Service(Runtime(cfg, Clock(start=T0))):
            await wait_for(lambda: len(got.of("rainstorm:RG-SQ-01")) == 20, 10, "the warnings from the outbox")
            # deleted once their PUBACKs are in (a stop before that would only publish them again)
            with StateStore(cfg.path(cfg.rules.state, "rules.state.sqlite")) as store:
                await wait_for(lambda: store.peek_outbox_depth() == 0, 10, "the outbox emptied")
        assert got.got == left
        with StateStore(cfg.path(cfg.rules.state, "rules.state.sqlite")) as store:
            assert store.outbox_depth == 0
    finally:
        sub.cancel()


async def test_a_gateway_last_will_publishes_an_equipment_warning_for_maintainers(mosquitto, prefix, tmp_path):
    cfg = demo_config(tmp_path, mosquitto.port, prefix)
    got, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix, got, ready))
    await ready.wait()
    try:
        async with Service(Runtime(cfg, Clock(start=T0))):
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
                await c.publish(topics.status(prefix, "gw-xl"), json.dumps({"gateway": "gw-xl", "online": True}), qos=1)
                await c.publish(topics.status(prefix, "gw-xl"), json.dumps({"gateway": "gw-xl", "online": False}),
                                qos=1)
            await wait_for(lambda: got.of("equipment:gateway:gw-xl"), 10, "the gateway warning")
        w = got.of("equipment:gateway:gw-xl")[0]
        assert w.hazard.value == "equipment" and w.state is WarningState.ISSUED and "gw-xl" in w.title
    finally:
        sub.cancel()


async def test_a_drill_run_publishes_drill_warnings_retained_for_dashboards(mosquitto, prefix, tmp_path):
    cfg = demo_config(tmp_path, mosquitto.port, prefix)
    live, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix, live, ready))
    await ready.wait()
    try:
        async with Service(Runtime(cfg, Clock(start=T0), drill=True)):
            await publish(mosquitto.port, prefix, [rain_mm(60.0, 10)])
            await wait_for(lambda: live.of("rainstorm:RG-SQ-01"), 10, "the drill warning")
    finally:
        sub.cancel()
    assert live.of("rainstorm:RG-SQ-01")[0].drill
    late, ready = Warnings(), asyncio.Event()  # a dashboard connecting afterwards gets the latest state
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix + "", late, ready))
    try:
        await wait_for(lambda: late.of("rainstorm:RG-SQ-01"), 10, "the retained warning")
    finally:
        sub.cancel()
    w = late.of("rainstorm:RG-SQ-01")[-1]
    assert w.drill and w.level == Level.ORANGE


async def test_a_retained_loss_report_raises_an_equipment_warning_once_across_restarts(mosquitto, prefix, tmp_path):
    from prometheus_client import REGISTRY
    cfg = demo_config(tmp_path, mosquitto.port, prefix)
    quick = cfg.rules.model_copy(update={"tick_s": 0.1,
                                         "equipment": cfg.rules.equipment.model_copy(update={"loss_quiet_s": 0.5})})
    cfg = cfg.model_copy(update={"rules": quick})
    got, ready = Warnings(), asyncio.Event()
    sub = asyncio.create_task(subscribe(mosquitto.port, prefix, got, ready))
    await ready.wait()

    def rejected() -> float:
        return REGISTRY.get_sample_value("yujing_rules_rejected_total", {"reason": "json"}) or 0

    before = rejected()
    report = {"component": "collector-c1", "dropped": 1200, "reason": "disk-full", "ts": T0.isoformat()}
    try:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:  # sent while the rules were not running
            await c.publish(topics.loss(prefix, "collector-c1"), json.dumps(report), qos=1, retain=True)
            await c.publish(topics.loss(prefix, "collector-c2"), b"{not json", qos=1, retain=True)
        async with Service(Runtime(cfg, Clock(start=T0))):
            await wait_for(lambda: len(got.of("equipment:loss:collector-c1")) >= 2, 10, "the loss warning and its lift")
            await wait_for(lambda: rejected() == before + 1, 10, "the garbage report to be counted")
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:  # a gateway's outbox overflowed
                await c.publish(topics.status(prefix, "gw-xl"), json.dumps({"online": True, "outbox_dropped": 9}), qos=1)
            await wait_for(lambda: got.of("equipment:loss:gw-xl"), 10, "the gateway's loss warning")
            assert "9 条" in got.of("equipment:loss:gw-xl")[0].title
        async with Service(Runtime(cfg, Clock(start=T0))):  # the retained report arrives again, on subscribing,
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:  # so before this one
                await c.publish(topics.loss(prefix, "collector-c3"), json.dumps({**report, "component": "collector-c3"}),
                                qos=1)
            await wait_for(lambda: got.of("equipment:loss:collector-c3"), 10, "the second loss warning")
        w, lift = got.of("equipment:loss:collector-c1")  # and is known: not raised again
        assert (w.level, w.state, w.hazard.value) == (Level.YELLOW, WarningState.ISSUED, "equipment")
        assert "1200 条" in w.title and any("磁盘已满" in e for e in w.evidence), (w.title, w.evidence)
        assert lift.state is WarningState.LIFTED
    finally:
        sub.cancel()


async def test_reading_ids_are_saved_with_the_state_so_a_redelivery_after_a_restart_is_a_duplicate(
        mosquitto, prefix, tmp_path):
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0

    cfg = demo_config(tmp_path, mosquitto.port, prefix)
    r = rain_mm(30.0, 10, rid="sent-before-the-restart")
    fed, dup = sample("yujing_rules_readings_total"), sample("yujing_rules_rejected_total", reason="duplicate")
    async with Service(Runtime(cfg, Clock(start=T0))):
        await publish(mosquitto.port, prefix, [r])
        await wait_for(lambda: sample("yujing_rules_readings_total") == fed + 1, 10, "the reading to be judged")
    async with Service(Runtime(cfg, Clock(start=T0))):  # as if the PUBACK had been lost in a crash
        await publish(mosquitto.port, prefix, [r])
        await wait_for(lambda: sample("yujing_rules_rejected_total", reason="duplicate") == dup + 1, 10,
                       "the redelivery to be known")
    assert sample("yujing_rules_readings_total") == fed + 1


async def test_each_warning_key_keeps_its_own_retained_slot_and_a_drill_never_takes_the_real_one(
        mosquitto, prefix, tmp_path):
    """Real rain (orange) then a drill-mode gauge's readings at the same site (red, were it real): a subscriber
    connecting afterwards gets the real orange as the retained warning, and the drill's red went out unretained
    as a drill warning. Device silence warnings of the same site sit on topics of their own."""
    cfg = demo_config(tmp_path, mosquitto.port, prefix)
    rt = Runtime(cfg, Clock(start=T0 + timedelta(hours=3)))
    async with serving(rt, mosquitto.port, prefix) as live:
        await publish(mosquitto.port, prefix, steady_rain(20, 3))  # 60 mm in 3 h: orange
        await wait_for(lambda: live.of("rainstorm:RG-SQ-01"), 10, "the real orange")
        drill = [counter(9000 + 40 * i, T0 + timedelta(minutes=30 * i), drill=True) for i in range(7)]  # 240 mm
        await publish(mosquitto.port, prefix, drill)
        await wait_for(lambda: any(w.drill and w.level == Level.RED for w in live.of("rainstorm:RG-SQ-01")), 10,
                       "the drill's red")
        assert [w.level for w in live.of("rainstorm:RG-SQ-01") if not w.drill] == [Level.ORANGE]
    retained: dict[str, HazardWarning] = {}
    end = f"{prefix}/warnings/end/of-retained"  # Mosquitto sends retained messages on SUBACK, before this
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"late-{prefix}") as c:
        await c.subscribe(topics.warnings(prefix), qos=1)
        await c.publish(end, b"", qos=1)
        async with asyncio.timeout(10):
            async for msg in c.messages:
                if str(msg.topic) == end:
                    break
                retained[str(msg.topic)] = HazardWarning.model_validate_json(msg.payload)
    main = retained[topics.warnings(prefix, "rainstorm", "RG-SQ-01")]
    assert (main.level, main.drill) == (Level.ORANGE, False)
    assert not any(w.drill for w in retained.values())
    assert all(t == topics.warning(prefix, w.hazard.value, w.site, w.key) for t, w in retained.items())
    assert len({w.key for w in retained.values()}) == len(retained)


def test_warning_topics_give_each_key_its_own_level():
    assert topics.warning("p", "fire", "S1", "fire:S1") == "p/warnings/fire/S1"
    assert topics.warning("p", "fire", "S1", "fire:S1:danger") == "p/warnings/fire/S1/danger"
    assert topics.warning("p", "equipment", "S1", "equipment:rg-1") == "p/warnings/equipment/S1/rg-1"
    assert topics.warning("p", "equipment", "S1", "equipment:a/b+#:fault") == "p/warnings/equipment/S1/a_b__:fault"
    assert topics.warnings("p") == "p/warnings/#"
