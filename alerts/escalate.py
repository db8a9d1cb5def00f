"""Confirm and escalate (叫应): no confirmation in time → call again, then the deputy, then the level above.

Each recipient asked to confirm opens a *chain* (warning id, their phone). Its steps are rows in the
notification log with a due time on the scenario clock, so they survive restarts and run at drill
speed. A confirmation from anyone the chain reached (the person, their deputy, the level above)
closes it. Every step is an event in the log with its timestamp.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter

from alerts.config import AlertsConfig, EscalationStep, ProviderName
from alerts.directory import Directory
from alerts.nflog import NodeTier, Notification, NotificationLog
from alerts.route import Recipient
from yujing.config.areas import Tier
from yujing.config.people import Channel, Person, Role
from yujing.model import HazardWarning

log = logging.getLogger("yujing.alerts.escalate")
ESCALATIONS = Counter("yujing_alerts_escalations_total", "叫应 overdue: escalation steps taken for want of a "
                      "confirmation", ["step"])
UNCONFIRMED = Counter("yujing_alerts_unconfirmed_total", "叫应 chains that ran out of escalation steps unconfirmed")


@dataclass(frozen=True)
class Escalation:
    """What a due step asks for: tell these people (attempt number ``attempt``), marked as part of a chain."""

    recipients: list[Recipient]
    attempt: int
    step: EscalationStep


def chain_of(n: Notification) -> str:
    """The phone whose chain a notification belongs to (``reason`` is ``step:origin`` for escalations)."""
    return n.reason.split(":", 1)[1] if ":" in n.reason else n.phone


class Escalator:
    def __init__(self, cfg: AlertsConfig, directory: Directory) -> None:
        self.cfg = cfg
        self.directory = directory
        # the first voice provider's per-callee limits: a recall the provider would refuse goes elsewhere
        first = cfg.providers[0]
        if first is ProviderName.ALIYUN and cfg.aliyun is not None:
            self.callee_limits = list(cfg.aliyun.callee_limits)
        else:
            self.callee_limits = list(cfg.twilio.callee_limits)

    def call_wait_s(self, nflog: NotificationLog, phone: str, now: datetime) -> float:
        """Seconds until the provider would take another call to ``phone`` (0: now), by the calls placed."""
        wait = 0.0
        for w in self.callee_limits:
            placed = nflog.notifications.calls_to(phone, now - timedelta(seconds=w.seconds), now=now)
            if len(placed) >= w.count:
                oldest = datetime.fromisoformat(placed[len(placed) - w.count])
                wait = max(wait, (oldest + timedelta(seconds=w.seconds) - now).total_seconds())
        return wait

    def may_call(self, nflog: NotificationLog, phone: str, now: datetime) -> bool:
        """Would the provider take one more call to ``phone`` now? (Every call queued to it counts.)"""
        for w in self.callee_limits:
            if len(nflog.notifications.calls_to(phone, now - timedelta(seconds=w.seconds))) >= w.count:
                return False
        return True

    def timeout_s(self, w: HazardWarning) -> float | None:
        return self.cfg.ack.timeout_s.get(w.level)

    def open(self, nflog: NotificationLog, w: HazardWarning, phones: list[str], now: datetime) -> None:
        """Start a chain for each phone asked to confirm ``w`` that has none yet (a re-decision after a
        crash opens the chains the crash cut off, and no other)."""
        timeout = self.timeout_s(w)
        if timeout is None or not self.cfg.ack.steps:
            return
        for phone in phones:
            if nflog.timers.schedule(w.id, phone, 1, now + timedelta(seconds=timeout)):
                nflog.timeline.add(now, w.id, phone, "awaiting-confirmation", {"timeout_s": timeout})

    def supersede(self, nflog: NotificationLog, key: str, keep: str, now: datetime) -> None:
        """A newer version (or the lift) of ``key`` replaces older chains."""
        for wid in nflog.timers.waiting_versions(key, but=keep):
            if nflog.timers.stop(wid):
                nflog.timeline.add(now, wid, "", "escalation-superseded", {"by": keep})

    def confirm(self, nflog: NotificationLog, n: Notification, via: str, now: datetime) -> bool:
        """``n.phone`` confirmed ``n.warning_id``: record it and close the chain it belongs to."""
        fresh = nflog.confirmations.add(n.warning_id, n.phone, via, now)
        if fresh:
            nflog.timeline.add(now, n.warning_id, n.phone, "confirmed", {"via": via, "key": n.key})
        origin = chain_of(n)
        stopped = nflog.timers.stop(n.warning_id, origin)
        if origin != n.phone:
            stopped += nflog.timers.stop(n.warning_id, n.phone)
        if stopped:
            nflog.timeline.add(now, n.warning_id, origin, "escalation-stopped", {"confirmed_by": n.phone})
        return fresh

    def chain_confirmed(self, nflog: NotificationLog, warning_id: str, origin: str) -> bool:
        confirmed = nflog.confirmations.of(warning_id)
        if origin in confirmed:
            return True
        return bool(nflog.notifications.chain_members(warning_id, origin) & confirmed)

    def step(self, nflog: NotificationLog, warning_id: str, origin: str, step_no: int,
             now: datetime) -> Escalation | None:
        """A due step of the chain (warning, origin): what to send, and the next step scheduled."""
        nflog.timers.close(warning_id, origin, step_no)
        if self.chain_confirmed(nflog, warning_id, origin):
            return None
        first = nflog.notifications.first_to(warning_id, origin)
        w = nflog.warnings.get(warning_id)
        if first is None or w is None:
            return None
        steps = self.cfg.ack.steps
        timeout = self.timeout_s(w) or 300.0
        while step_no <= len(steps):
            action = steps[step_no - 1]
            people = self._limited(nflog, warning_id, origin, action, first, now)
            if step_no < len(steps):
                nflog.timers.schedule(warning_id, origin, step_no + 1, now + timedelta(seconds=timeout))
            if people:
                ESCALATIONS.labels(str(action)).inc()
                nflog.timeline.add(now, warning_id, origin, f"escalate-{action}",
                            {"step": step_no, "to": [r.phone for r in people]})
                log.info("no confirmation: escalating", extra={"kv": {"warning": warning_id, "origin": origin,
                                                                        "step": str(action), "to": len(people)}})
                return Escalation(people, step_no + 1, action)
            nflog.timeline.add(now, warning_id, origin, f"escalate-{action}-nobody", {"step": step_no})
            if step_no < len(steps):  # nobody for this step (no deputy configured): take the next one now
                nflog.timers.close(warning_id, origin, step_no + 1)
            step_no += 1
        UNCONFIRMED.inc()
        nflog.timeline.add(now, warning_id, origin, "unconfirmed-after-all-steps")
        return None

    def _limited(self, nflog: NotificationLog, warning_id: str, origin: str, action: EscalationStep,
                 first: Notification, now: datetime) -> list[Recipient]:
        """The step's people, as the provider allows: a recall it would refuse (per-callee limit) goes to the
        deputy instead (or, with none, the level above); anyone else it would refuse a call is sent the SMS."""
        if action is EscalationStep.RECALL and not self.may_call(nflog, first.phone, now):
            instead = self._people(EscalationStep.DEPUTY, first) or self._people(EscalationStep.UP, first)
            nflog.timeline.add(now, warning_id, origin, "recall-limited",
                        {"phone": first.phone, "instead": [r.phone for r in instead]})
            people = instead
        else:
            people = self._people(action, first)
        out = []
        for r in people:
            if Channel.VOICE in r.channels and not self.may_call(nflog, r.phone, now):
                chans = tuple(c for c in r.channels if c is not Channel.VOICE) or (Channel.SMS,)
                nflog.timeline.add(now, warning_id, origin, "call-limited", {"phone": r.phone, "instead": "sms"})
                r = Recipient(r.person, r.node, r.tier, chans, r.ack, r.reason)
            out.append(r)
        return out

    def _people(self, action: EscalationStep, n: Notification) -> list[Recipient]:
        reason = f"{action}:{n.phone}"
        if action is EscalationStep.RECALL:
            person = Person(name=n.name, role=Role.RESPONSIBLE, phone=n.phone, channels=[Channel.VOICE, Channel.SMS])
            return [Recipient(person, n.node, n.tier, (Channel.VOICE,), True, reason)]
        if action is EscalationStep.DEPUTY:
            people = [p for p in self._node_people(n.node) if p.role is Role.DEPUTY and p.phone != n.phone]
            return [Recipient(p, n.node, n.tier, _voice_first(p), True, reason) for p in people]
        node = self._above(n.node)
        if node is None:
            return []
        people = [p for p in self.directory.people(node, [Role.RESPONSIBLE, Role.DUTY]) if p.phone != n.phone]
        tier = NodeTier.of(self.directory.area(node).tier)  # type: ignore[union-attr]
        return [Recipient(p, node, tier, _voice_first(p), True, reason) for p in people]

    def _node_people(self, node: str) -> list[Person]:
        if node.startswith("site:"):
            site = self.directory.site(node[5:])
            return list(site.people) if site else []
        area = self.directory.area(node)
        return list(area.people) if area else []

    def _above(self, node: str) -> str | None:
        """The next level up: a site's people answer to its village; an area's to its parent."""
        if node.startswith("site:"):
            site = self.directory.site(node[5:])
            if site is None:
                return None
            village = self.directory.ancestor(site.area, Tier.VILLAGE)
            return village.id if village else site.area
        parent = self.directory.parent(node)
        return parent.id if parent else None

    def next_due(self, nflog: NotificationLog) -> datetime | None:
        return nflog.timers.next_due()


def _voice_first(p: Person) -> tuple[Channel, ...]:
    chans = tuple(c for c in (Channel.SMS, Channel.VOICE) if c in p.channels)
    return chans or (Channel.SMS,)
