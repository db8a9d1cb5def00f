"""What a drill sees, written down: readings, gateway status, warnings off the broker; messages and calls
off the Twilio stand-in. Everything lands in a :class:`~simulators.report.Timeline`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from simulators.report.timeline import OBSERVER_TIER, Kind, Recipient, Timeline
from simulators.scenario import FaultEvent, FaultKind
from yujing import topics, wire
from yujing.config.areas import load_households
from yujing.mqtt import client as mqtt_client
from yujing.errors import PayloadError
from yujing.model import HazardWarning

log = logging.getLogger("yujing.drill.recorder")


@dataclass(frozen=True)
class Person:
    phone: str
    name: str
    role: str
    area: str
    tier: str
    person: Any = None  # the configured yujing Person


def directory(cfg: Any) -> dict[str, Person]:
    """Everyone the deployment knows, by phone: area people, site people, and households.csv if present."""
    out: dict[str, Person] = {}
    for a in cfg.areas:
        for p in a.people:
            out.setdefault(p.phone, Person(p.phone, p.name, p.role.value, a.id, a.tier.value, p))
    for s in cfg.sites:
        for p in s.people:
            out.setdefault(p.phone, Person(p.phone, p.name, p.role.value, s.area, "site", p))
    for p in cfg.alerts.drill.recipients:
        out.setdefault(p.phone, Person(p.phone, p.name, p.role.value, "drill", "drill", p))
    path = getattr(cfg.alerts, "households", "")
    if path:
        for group, people in load_households(cfg.path(path, "")).items():
            for p in people:
                out.setdefault(p.phone, Person(p.phone, p.name, "household", group, "household", p))
    return out


class Recorder:
    def __init__(self, tl: Timeline, cfg: Any) -> None:
        self.tl = tl
        self.cfg = cfg
        self.people = directory(cfg)
        self.prefix = cfg.mqtt.topic_prefix
        self.readings = 0
        self.warnings: list[HazardWarning] = []
        self._gateway_online: dict[str, bool] = {}
        self._device_state: dict[str, str] = {}
        self.subscribed = False
        self.retained_topics: set[str] = set()
        self.clock: Any = None  # the drill's clock, for arrival times
        self.active = True  # status changes count only while the drill runs (not its own shutdown)

    # --- the broker --------------------------------------------------------------------------------

    async def listen(self) -> None:
        async with mqtt_client(self.cfg.mqtt, f"yujing-drill-recorder-{self.prefix}") as c:
            for topic in (topics.readings(self.prefix), topics.status(self.prefix), topics.warnings(self.prefix),
                          topics.cap(self.prefix)):
                await c.subscribe(topic, qos=1)
            self.subscribed = True
            async for msg in c.messages:
                if not str(msg.topic).startswith(self.prefix + "/"):
                    continue  # not the drill's (a broker may serve more than was asked): never recorded, never cleared
                kind = str(msg.topic)[len(self.prefix) + 1:].split("/", 1)[0]
                if kind in ("warnings", "status", "cap"):
                    self.retained_topics.add(str(msg.topic))  # the drill clears these when it ends
                if msg.retain or kind == "cap":
                    continue
                try:
                    self.on_message(str(msg.topic), bytes(msg.payload))
                except (PayloadError, ValueError, KeyError) as exc:
                    log.warning("drill recorder: unreadable message", extra={"kv": {"topic": str(msg.topic),
                                                                                    "error": str(exc)[:200]}})

    def on_message(self, topic: str, payload: bytes) -> None:
        kind = topic[len(self.prefix) + 1:].split("/", 1)[0]
        if kind == "readings":
            for r in wire.decode(payload, topic, 1 << 30):
                self.readings += 1
                self.tl.point(r.sensor, r.site, r.quantity, self.tl.offset(r.ts), r.value)
        elif kind == "warnings":
            self.on_warning(wire.decode_warning(payload, topic))
        elif kind == "status" and payload and self.active:
            self.on_status(wire.decode_status(payload, topic))

    def on_warning(self, w: HazardWarning) -> None:
        self.warnings.append(w)
        site = self.tl.sites.get(w.site, {}).get("name", w.site)
        summary = f"{w.hazard.chinese}{w.level.chinese}预警 {w.state.chinese} · {site} ({w.site})"
        if w.title:
            summary += f" · {w.title}"
        self.tl.add(self.tl.offset(w.updated_at), Kind.WARNING, summary, key=w.key, version=w.version,
                    hazard=w.hazard.value, level=w.level.value, state=w.state.value, site=w.site, area=w.area,
                    rule=w.rule, evidence=list(w.evidence), drill=w.drill)

    def on_status(self, status: wire.GatewayStatus) -> None:
        gw = status.gateway
        # arrival time: a last will carries the timestamp of the connection that registered it
        t = self.tl.offset(self.clock.now()) if self.clock is not None else self.tl.offset(status.ts)
        online = status.online
        if gw in self._gateway_online and self._gateway_online[gw] != online:
            self.tl.add(t, Kind.STATUS, f"gateway {gw} {'back online' if online else 'OFFLINE'}", gateway=gw,
                        online=online)
        self._gateway_online[gw] = online
        for dev, st in status.devices.items():
            state = st.get("state", "")
            before = self._device_state.get(dev)
            if before is not None and before != state and "offline" in (before, state):
                since = _ts(st.get("since"))
                self.tl.add(self.tl.offset(since) if since else t, Kind.STATUS, f"device {dev} {state}",
                            device=dev, gateway=gw, state=state, error=st.get("error", ""))
            self._device_state[dev] = state

    # --- people ------------------------------------------------------------------------------------

    def recipient(self, phone: str) -> Recipient:
        r = self.tl.recipients.get(phone)
        if r is None:
            p = self.people.get(phone)
            r = Recipient(phone, p.name if p else "(unknown)", p.role if p else "", p.area if p else "",
                          p.tier if p else "")
            self.tl.recipients[phone] = r
        return r

    def notified(self, t: float, phone: str, channel: str, body: str = "", warning: str = "") -> None:
        r = self.recipient(phone)
        if r.first_told_t is None or t < r.first_told_t:
            r.first_told_t = t
        if channel == "voice":
            r.calls += 1
            if r.asked_t is None or t < r.asked_t:
                r.asked_t = t
        else:
            r.messages += 1
        if warning and warning not in r.warnings:
            r.warnings.append(warning)
        what = "call" if channel == "voice" else "SMS"
        self.tl.add(t, Kind.NOTIFICATION, f"{what} to {r.name} ({r.role}, {r.area}){': ' + body[:80] if body else ''}",
                    phone=phone, channel=channel, role=r.role, area=r.area, tier=r.tier, warning=warning, text=body)

    def would_notify(self, t: float, w: HazardWarning | None, warning_id: str, attempt: int,
                     entries: list[list[Any]]) -> None:
        """The real warning (or an escalation step of it) would also have told these people, who do not take
        part: ``entries`` are ``[phone, node, tier, "sms voice", ack]`` as the drill's notification log has them."""
        by_tier: dict[str, int] = {}
        for phone, node, tier, channels, ack in entries:
            r = self.tl.would_have_been_told.get(phone)
            if r is None:
                p = self.people.get(phone)
                r = Recipient(phone, p.name if p else "(unknown)", p.role if p else "", p.area if p else node,
                              p.tier if p else tier)
                self.tl.would_have_been_told[phone] = r
            if r.first_told_t is None or t < r.first_told_t:
                r.first_told_t = t
            chans = str(channels).split()
            r.messages += "sms" in chans
            r.calls += "voice" in chans
            if ack and (r.asked_t is None or t < r.asked_t):
                r.asked_t = t
            if warning_id not in r.warnings:
                r.warnings.append(warning_id)
            by_tier[tier] = by_tier.get(tier, 0) + 1
        site = self.tl.sites.get(w.site, {}).get("name", w.site) if w is not None else ""
        what = (f"{w.hazard.chinese}{w.level.chinese}预警 {w.state.chinese} · {site} ({w.site})" if w is not None
                else warning_id)
        step = " (escalation)" if attempt > 1 else ""
        tiers = ", ".join(f"{n} {tier}" for tier, n in sorted(by_tier.items(), key=lambda kv: -kv[1]))
        self.tl.add(t, Kind.WOULD_NOTIFY, f"{what}{step}: would also have told {len(entries)} people not taking "
                    f"part ({tiers}); not contacted", warning=warning_id, attempt=attempt, people=len(entries))

    def read_drill_log(self, drill_log: Path) -> None:
        """What only alerts knows, from the drill's notification log once the alerts service has stopped:
        who the real warnings would also have told (``drill-untold`` events: none of them was contacted),
        and which warnings reached someone taking part (the figures time the drill from those)."""
        try:
            from alerts.nflog import NotificationLog
        except ImportError:  # a build without alerts: nobody was routed
            return
        if not drill_log.exists():
            return
        with NotificationLog(drill_log, drill=True) as nflog:
            for at, wid, _phone, what, detail in nflog.timeline.all():
                if what == "drill-untold":
                    doc = json.loads(detail)
                    self.would_notify(self.tl.offset(datetime.fromisoformat(at)), nflog.warnings.get(wid), wid,
                                      int(doc.get("attempt", 1)), doc.get("recipients", []))
            for e in self.tl.events:
                if e.kind is Kind.WARNING:
                    wid = f"{e.data['key']}#{e.data['version']}"
                    e.data["participants_told"] = any(n.warning_id == wid and n.tier != OBSERVER_TIER
                                                      for n in nflog.notifications.for_warning_key(e.data["key"]))

    def confirmed(self, t: float, phone: str, via: str) -> None:
        r = self.recipient(phone)
        if r.confirmed_t is None or t < r.confirmed_t:
            r.confirmed_t, r.confirmed_via = t, via
        if r.asked_t is None:  # confirmed an SMS (a reply): the ask was the message
            r.asked_t = r.first_told_t
        self.tl.add(t, Kind.CONFIRMATION, f"{r.name} ({r.role}) confirmed: {via}", phone=phone, via=via)

    def unanswered(self, t: float, phone: str, outcome: str) -> None:
        r = self.recipient(phone)
        self.tl.add(t, Kind.UNANSWERED, f"call to {r.name} ({r.role}) {outcome}", phone=phone, outcome=outcome)

    # --- what the drill knows beforehand and afterwards --------------------------------------------

    def describe_sites(self) -> None:
        """Every site of the deployment for the report's map, marked whether the drill scripts it."""
        scripted = {d.site for g in self.cfg.gateways for d in g.devices}
        for s in self.cfg.sites:
            self.tl.sites[s.id] = {"name": s.name, "kind": s.kind.value, "area": s.area,
                                   "lineage": [a.id for a in self.cfg.lineage(s.area)], "scripted": s.id in scripted,
                                   "thresholds": s.thresholds.model_dump(mode="json", exclude_none=True)}

    def mark_fault(self, ev: FaultEvent) -> None:
        """A fault the scenario scripts, at its start and (if it ends) its end."""
        target = ev.gateway or ev.device
        names = {FaultKind.LINK_DOWN: "4G link drops", FaultKind.DARK: "goes dark (power lost)",
                 FaultKind.OFFLINE: "goes offline", FaultKind.HANG: "hangs", FaultKind.GARBLED: "sends garbage"}
        self.tl.add(ev.at, Kind.FAULT, f"{target} {names[ev.fault]}", target=target, fault=ev.fault.value,
                    starting=True)
        if ev.until is not None:
            self.tl.add(ev.until, Kind.FAULT, f"{target} restored", target=target, fault=ev.fault.value,
                        starting=False)

    def note_plans(self, alerts_state: dict[str, Any]) -> None:
        note_plans(self.tl, alerts_state)


def note_plans(tl: Timeline, alerts_state: dict[str, Any]) -> None:
    """The bound the provider's limits put on each fan-out (alerts' ``fanout-plan``), said in the report."""
    pipeline = alerts_state.get("pipelines", {}).get("drill")
    if pipeline is None:
        return
    for _, warning_id, _, _, detail in pipeline.nflog.timeline.all(what="fanout-plan"):
        p = json.loads(detail)
        tl.plans.append({"warning": warning_id, **p})
        tl.notes.append(
            f"Fan-out of {warning_id} through {p['provider']}: {p['sms']} SMS ({p['sms_segments']} "
            f"segments), {p['calls']} calls; the provider's limits and our rates put the last person at "
            f"{p['last_s']:g} s after the first request (SMS {p['sms_s']:g} s, calls {p['calls_s']:g} s).")


def _ts(v: Any) -> datetime | None:
    if not v:
        return None
    try:
        return datetime.fromisoformat(v)
    except (TypeError, ValueError):
        return None
