"""``yujing drill CONFIG SCENARIO --speed N --report DIR``: a scenario replayed through the real chain.

The real edge agents, broker, collector, rules and alerts run on an accelerated clock, drill-marked
(``Runtime(drill=True)``), on their own topic prefix (``<prefix>-drill-<run>``), MQTT sessions (client ids
ending ``-drill-<run>``) and state directory, so a drill never mixes with live warnings, even on the live
broker. They are started, supervised and stopped by :mod:`yujing.stack`, as ``yujing run`` starts them.
The simulated devices play the scenario; each gateway reaches the broker through a
:class:`~simulators.link.LinkRelay` so a 4G link can drop and a gateway can go dark; the Twilio stand-in
answers calls as the scenario says. Alerts routes each drill warning as the real one, cut down to the
participants; whom it left out is read from its drill log. The recorder writes down everything it sees and
the report is written from that timeline.

Scope: a drill simulates the devices the scenario scripts (and the gateways it faults), not the whole
county, so hours of weather replay in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from simulators.config import SimulationConfig
from simulators.devices import Place, relocate
from simulators.link import LinkRelay
from simulators.playback import StormRain
from simulators.recorder import Recorder
from simulators.report import Timeline, write_report
from simulators.report.progress import Progress
from simulators.report.timeline import check_expectations, figures
from simulators.scenario import FaultEvent, FaultKind, Scenario, check_against, load_scenario
from simulators.service import _twilio, running
from yujing.clock import Clock
from yujing.compose import Config
from yujing.errors import ConfigError, YujingError
from yujing.runtime import Runtime
from yujing.stack import STOP_GRACE_S, Parts, broker, serve_of

log = logging.getLogger("yujing.drill")
SERVICES = ("collector", "rules", "alerts")


def storm_sites(cfg: Config, scn: Scenario, min_mm_h: float = 5.0) -> set[str]:
    """Rain stations a storm of the scenario rains on (peak rate at least ``min_mm_h``)."""
    t0 = datetime(2000, 1, 1, tzinfo=timezone.utc)
    out = set()
    for site in cfg.sites:
        if site.kind.value != "rain" or site.lat is None or site.lon is None:
            continue
        for storm in scn.storms:
            src = StormRain(storm, site.lat, site.lon, t0)
            steps = int(scn.duration // 600) + 1
            if any(src.value(t0 + timedelta(seconds=600 * i)) >= min_mm_h for i in range(steps)):
                out.add(site.id)
                break
    return out


def drill_scope(cfg: Config, scn: Scenario) -> list[Any]:
    """The gateways a drill runs, each with only the devices the scenario scripts (or faults)."""
    sites, devices = scn.scripted_sites() | storm_sites(cfg, scn), scn.scripted_devices()
    faulted = {f.gateway for f in scn.faults if f.gateway}
    out = []
    for gw in cfg.gateways:
        keep = [d for d in gw.devices if d.site in sites or d.id in devices]
        if not keep and gw.id in faulted and gw.devices:
            keep = [gw.devices[0]]
        if keep:
            out.append(gw.model_copy(update={"devices": keep}))
    return out


def drill_config(cfg: Config, scn: Scenario, *, state_dir: Path, mqtt: Any = None,
                 twilio_url: str | None = None, speed: float, run: str = "") -> Config:
    """The deployment as a drill runs it: drill prefix, scoped gateways, its own state, the stand-in.

    ``run`` names this drill: its topics are ``<prefix>-drill-<run>`` and its MQTT sessions its own, so
    nothing retained or queued by an earlier drill (or by the live system) reaches it.
    """
    m = mqtt or cfg.mqtt
    prefix = f"{m.topic_prefix}-drill" + (f"-{run}" if run else "")
    # its own sessions too: a part of a drill on the live broker never resumes (nor takes over) a live part's
    m = m.model_copy(update={"topic_prefix": prefix, "client_id_suffix": f"{m.client_id_suffix}-drill-{run or 'x'}"})
    gateways = []
    # simulated devices answer on loopback ports and ptys of the drill's own, never where a live system's
    # devices are (a drill may run beside production, and a pty would replace a real /dev/tty node);
    # MQTT sources publish under the drill's prefix, to the drill's broker (even one with a broker of its own)
    place = Place(state_dir, prefix=prefix)
    for gw in drill_scope(cfg, scn):
        devs = []
        for d in gw.devices:
            if d.site in scn.intensive:
                d = d.model_copy(update={"interval_s": scn.intensive[d.site]})
            devs.append(relocate(d, place))
        gateways.append(_unserved(gw.model_copy(update={"devices": devs, "outbox": ""})))
    update: dict[str, Any] = {
        "mqtt": m,
        "gateways": gateways,
        "deployment": cfg.deployment.model_copy(update={
            "data_dir": str(state_dir), "name": f"{cfg.deployment.name} drill {run}".strip()}),
        "simulation": SimulationConfig(devices=True, twilio=True, speed=speed),
    }
    store = cfg.collector.store
    if getattr(store, "path", None):
        update["collector"] = cfg.collector.model_copy(update={"store": store.model_copy(update={"path": ""})})
    if getattr(cfg.rules, "state", None):
        update["rules"] = cfg.rules.model_copy(update={"state": ""})
    alerts = cfg.alerts
    if getattr(alerts, "log", None):
        alerts = alerts.model_copy(update={"log": ""})
    if getattr(getattr(alerts, "drill", None), "log", None):  # its own drill log, in its own state directory
        alerts = alerts.model_copy(update={"drill": alerts.drill.model_copy(update={"log": ""})})
    if twilio_url:
        alerts = alerts.model_copy(update={"twilio": alerts.twilio.model_copy(update={"base_url": twilio_url})})
    if getattr(alerts, "providers", None) and [p.value for p in alerts.providers] != ["twilio"]:
        # a drill sends through the stand-in only: never through a real provider's endpoint (Alibaba Cloud…)
        alerts = alerts.model_copy(update={"providers": [type(alerts.providers[0])("twilio")]})
    if hasattr(alerts, "webhook"):  # its own callback server, on a free port, beside any live one
        alerts = alerts.model_copy(update={"webhook": alerts.webhook.model_copy(update={"port": 0,
                                                                                          "public_url": ""})})

    update["alerts"] = alerts
    for part in ("collector", "rules", "alerts"):
        update[part] = _unserved(update.get(part, getattr(cfg, part)))
    out = cfg.model_copy(update=update)
    out._base_dir = cfg.base_dir
    return out


def _unserved(section: Any) -> Any:
    """No /metrics of its own: the live parts' metrics ports are taken (or would be) beside the drill."""
    if getattr(section, "metrics_port", None) is None:
        return section
    return section.model_copy(update={"metrics_port": None})


async def run_drill(cfg: Config, scn: Scenario, *, speed: float | None = None, report: str | Path | None = None,
                    progress: bool = False, mqtt: Any = None, start: datetime | None = None,
                    settle_s: float = 0.0, live_broker: bool = False) -> dict[str, Any]:
    """Run ``scn`` against ``cfg``; returns the report document (and writes the files if ``report``).

    ``live_broker``: the deployment's broker is already running (a drill started from the live system's
    console): use it, on the drill's own prefix, rather than start an embedded one on the same port.
    """
    problems = check_against(scn, cfg)
    if problems:
        raise ConfigError([f"scenario {scn.name}: {p}" for p in problems])
    speed = speed or scn.speed
    start = start or datetime.now(timezone.utc).replace(microsecond=0)
    mqtt = mqtt or cfg.mqtt
    tl = Timeline(scenario={"name": scn.name, "description": scn.description, "duration_s": scn.duration,
                            "hazard": scn.hazard.value if scn.hazard else None},
                  started_at=start, speed=speed, deployment=cfg.deployment.name)
    with tempfile.TemporaryDirectory(prefix="yujing-drill-") as state:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(broker(mqtt, live=live_broker))
            clock = Clock(speed, start=start)
            boot = Runtime(cfg, clock, drill=True)
            limits = None
            if scn.provider_limits:
                from simulators.twilio_records import TwilioLimits
                limits = TwilioLimits()
                tl.notes.append(f"Provider limits on: the Twilio stand-in sends {limits.sms_segments_per_s:g} SMS "
                                f"segment/s per sender and {limits.calls_per_s:g} call/s per account; senders: "
                                f"{len(cfg.alerts.twilio.from_numbers) or 1}.")
            standin = await stack.enter_async_context(_twilio(boot, 0, verbose=False, limits=limits))
            url = getattr(standin, "base_url", None)
            run = f"{start:%Y%m%d%H%M%S}{secrets.token_hex(2)}"
            dcfg = drill_config(cfg, scn, state_dir=Path(state), mqtt=mqtt, twilio_url=url, speed=speed, run=run)
            rt = Runtime(dcfg, clock, drill=True)
            rec = Recorder(tl, dcfg)
            rec.clock = clock
            rec.describe_sites()
            for ev in scn.faults:
                rec.mark_fault(ev)
            if standin is None:
                tl.notes.append("The Twilio stand-in is not available: no notification could be observed.")
            else:
                from simulators.calls import configure
                configure(standin, scn.calls, rec.people)
            tl.notes.append(f"Clock speed {speed:g}: every real second of processing (sending at the provider's "
                            f"rate, callbacks) counts as {speed:g} scenario seconds, so notification and "
                            "confirmation times here are upper bounds; drill at a lower speed for sharper figures.")
            missing = [p for p in ("edge",) + SERVICES if serve_of(p) is None]
            if missing:
                tl.notes.append(f"Not run (not available in this build): {', '.join(missing)}. "
                                "The timeline shows only what the parts that ran produced.")
            try:
                await _run(rt, scn, rec, stack, progress, standin, settle_s)
            finally:
                await _clean_broker(dcfg, rec)
    tl.ended_t = max(tl.ended_t, scn.duration)
    if report:
        return write_report(tl, scn.expect, report)
    doc = tl.to_json()
    doc["expectations"] = check_expectations(tl, scn.expect)
    doc["passed"] = all(e["met"] for e in doc["expectations"])
    return doc


async def _run(rt: Runtime, scn: Scenario, rec: Recorder, stack: contextlib.AsyncExitStack, progress: bool,
               standin: Any, settle_s: float) -> None:
    cfg = rt.config
    edge = serve_of("edge")
    links: dict[str, LinkRelay] = {}
    gw_tasks: dict[str, asyncio.Task] = {}
    gw_stops: dict[str, asyncio.Event] = {}
    async with asyncio.TaskGroup() as tg:
        listener = tg.create_task(rec.listen())
        deadline = time.monotonic() + 10
        while not rec.subscribed and time.monotonic() < deadline and not listener.done():
            await asyncio.sleep(0.01)

        for gw in cfg.gateways:
            links[gw.id] = await stack.enter_async_context(LinkRelay(cfg.mqtt.host, cfg.mqtt.port))

        def start_gateway(gw_id: str) -> None:
            if edge is None:
                return
            gw_cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(update={"host": "127.0.0.1",
                                                                                "port": links[gw_id].port})})
            gw_cfg._base_dir = cfg.base_dir
            gw_stops[gw_id] = asyncio.Event()
            gw_rt = Runtime(gw_cfg, rt.clock, gw_stops[gw_id], drill=True)
            gw_tasks[gw_id] = asyncio.create_task(edge(gw_rt, gateways=[gw_id]), name=f"edge-{gw_id}")

        async def gateway_action(ev: FaultEvent, starting: bool) -> None:
            link = links.get(ev.gateway or "")
            if link is None:
                return
            if starting:
                await link.down()
                if ev.fault is FaultKind.DARK and ev.gateway in gw_tasks:
                    gw_tasks[ev.gateway].cancel()  # power lost: no goodbye, the broker's will speaks
                    with contextlib.suppress(BaseException):
                        await gw_tasks.pop(ev.gateway)
            else:
                await link.up()
                if ev.fault is FaultKind.DARK and ev.gateway not in gw_tasks:
                    start_gateway(ev.gateway)

        alerts_state: dict[str, Any] = {}
        chain = Parts(tg, rt)  # started, supervised and stopped as `yujing run` does
        chain.start("collector")
        chain.start("rules")
        from simulators.calls import participants
        people = participants(cfg, scn.participants, rec.people)
        if not people:
            rec.tl.notes.append("Nobody takes part: the scenario names no participants and "
                                "alerts.drill.recipients is empty, so no drill warning is sent.")
        chain.start("alerts", drill_recipients=people, state=alerts_state,
                    **({"auth_token": standin.auth_token} if standin is not None else {}))
        if standin is not None:
            tg.create_task(_point_replies_at_alerts(standin, alerts_state, rt))
        call_log = None
        if standin is not None:
            from simulators.calls import CallLog
            call_log = CallLog(standin, rec, rt.clock)
        async with running(rt, scn, devices=[d for g in cfg.gateways for d in g.devices],
                           gateway_action=gateway_action, twilio=False) as sim:
            rec.tl.started_at = sim.t0  # scenario offsets count from here
            for gw in cfg.gateways:
                start_gateway(gw.id)
            bar = Progress(progress, scn.duration)
            while True:
                t = sim.offset(rt.clock.now())
                if call_log is not None:
                    call_log.update()
                bar.show(t, rec.tl)
                if t >= scn.duration + settle_s or rt.stop.is_set():  # the end, or a part failed
                    break
                await asyncio.sleep(min(0.25, rt.clock.real_seconds(scn.duration + settle_s - t) + 0.01))
            bar.show(scn.duration, rec.tl, done=True)
            rec.tl.ended_t = sim.offset(rt.clock.now())
            rec.active = False
            rec.note_plans(alerts_state)
            # the chain stops before the field: a gateway shut down at the end says goodbye (offline), which
            # rules still running would raise (and alerts send) as a gateway failure. The end is not one
            for late in await chain.stop():  # each part flushes and returns; one that does not is stopped, said so
                rec.tl.notes.append(f"{late} did not stop within {STOP_GRACE_S:g} s of the drill's end; it "
                                    "was cancelled.")
            for stop in gw_stops.values():
                stop.set()
            for task in list(gw_tasks.values()):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 10)
        await asyncio.sleep(0.3)  # the recorder takes the last messages off the broker
        if call_log is not None:
            call_log.update()
        rec.read_drill_log(cfg.path(cfg.alerts.drill.log, "alerts-drill.sqlite"))
        listener.cancel()
    chain.raise_if_failed()  # a drill with a part down proves nothing: no report, and the reason


async def _clean_broker(cfg: Config, rec: Recorder) -> None:
    """Leave nothing behind: clear the drill's retained messages and the persistent sessions of its parts."""
    from yujing.mqtt import client as mqtt_client
    try:
        async with mqtt_client(cfg.mqtt, f"yujing-drill-cleanup-{cfg.mqtt.topic_prefix}") as c:
            for topic in sorted(rec.retained_topics):
                await c.publish(topic, b"", qos=1, retain=True)
        ids = [cfg.alerts.client_id, cfg.collector.client_id]  # + the drill's client id suffix, as they had
        with contextlib.suppress(ImportError):
            from rules.service import client_id
            ids.append(client_id(Runtime(cfg)))
        for cid in filter(None, ids):
            async with mqtt_client(cfg.mqtt, cid, clean_session=True):
                pass
    except Exception as exc:  # a drill's result stands even if the broker went away at the end
        log.warning("drill: could not clean up the broker", extra={"kv": {"error": repr(exc)[:200]}})


async def _point_replies_at_alerts(standin: Any, state: dict[str, Any], rt: Runtime) -> None:
    """Inbound SMS (replies such as 收到) go where the alerts service listens, once it does."""
    while "webhooks" not in state and not rt.stop.is_set():
        await asyncio.sleep(0.02)
    if "webhooks" in state:
        standin.sms_webhook = f"{state['webhooks'].base_url}/twilio/sms"


async def main(cfg: Config, scenario_path: str, speed: float | None = None, report: str | None = None,
               progress: bool = True, live_broker: bool = False) -> int:
    """The ``yujing drill`` command: 0 when every expectation of the scenario is met, 1 when not, 2 on bad input."""
    try:
        scn = load_scenario(scenario_path)
        doc = await run_drill(cfg, scn, speed=speed, report=report, progress=progress,
                              live_broker=live_broker)
    except ConfigError as exc:
        print(f"yujing drill: {exc}", file=sys.stderr)
        return 2
    except YujingError as exc:  # a part of the chain failed (the log above says how)
        print(f"yujing drill: {exc}", file=sys.stderr)
        return 1
    f = doc["figures"]
    print(f"drill: {scn.name}: {'PASSED' if doc['passed'] else 'FAILED'} — {f['warnings_issued']} warnings "
          f"(highest {f['highest_level'] or 'none'}), {f['people_told']} people told "
          f"({f['would_have_been_told']} more would have been, not taking part), "
          f"first notification {f['trigger_to_first_notification_s']} s after the trigger")
    for e in doc["expectations"]:
        print(f"  [{'x' if e['met'] else ' '}] {e['expect']}: {e['detail']}")
    for n in doc.get("notes", []):
        print(f"  note: {n}")
    if report:
        print(f"report: {Path(report) / 'report.html'}")
    return 0 if doc["passed"] else 1


__all__ = ["drill_config", "drill_scope", "figures", "main", "run_drill"]
