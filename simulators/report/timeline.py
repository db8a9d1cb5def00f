"""A drill's timeline, and the figures a drill is judged by.

Pure data: the drill recorder fills a :class:`Timeline`; :func:`figures` and :func:`check_expectations`
compute from it; the report writers render it. ``report.json`` is ``Timeline.to_json()`` plus those.

Times are scenario seconds since the drill's start (``t``) and ISO timestamps (``ts``, UTC).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from yujing.model import Level


class Kind(enum.StrEnum):
    FAULT = "fault"  # the scenario injects or heals a fault
    STATUS = "status"  # a gateway or device goes offline / comes back
    WARNING = "warning"  # a HazardWarning: issued, upgraded, downgraded, lifted
    NOTIFICATION = "notification"  # an SMS or a call placed to a person
    CONFIRMATION = "confirmation"  # a person confirmed (key pressed, SMS reply)
    UNANSWERED = "unanswered"  # a call not answered
    ESCALATION = "escalation"  # a call passed to a deputy or the level above
    WOULD_NOTIFY = "would_notify"  # the real warning would also have told people not taking part


@dataclass
class Event:
    t: float
    kind: Kind
    summary: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipient:
    phone: str
    name: str = ""
    role: str = ""
    area: str = ""
    tier: str = ""
    first_told_t: float | None = None
    asked_t: float | None = None  # first call (the 叫应 ask); confirmations are timed from here
    messages: int = 0
    calls: int = 0
    confirmed_t: float | None = None
    confirmed_via: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def asked_to_confirm(self) -> bool:
        return self.calls > 0 or self.confirmed_t is not None


@dataclass
class Timeline:
    scenario: dict[str, Any]
    started_at: datetime
    speed: float
    deployment: str = ""
    events: list[Event] = field(default_factory=list)
    series: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)  # sensor → quantity → pts
    sensor_site: dict[str, str] = field(default_factory=dict)
    sites: dict[str, dict[str, Any]] = field(default_factory=dict)  # site id → name, kind, area, thresholds
    recipients: dict[str, Recipient] = field(default_factory=dict)  # by phone
    # people the real routing named who do not take part: never contacted, counted (first_told_t: when they
    # would have been told; messages/calls: what they would have got)
    would_have_been_told: dict[str, Recipient] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the drill could not do, said plainly
    # alerts' fanout-plans (alerts/plan.py): what the provider's limits allow, to judge the measured fan-out by
    plans: list[dict[str, Any]] = field(default_factory=list)
    ended_t: float = 0.0

    def offset(self, ts: datetime) -> float:
        return round((ts - self.started_at).total_seconds(), 3)

    def at(self, t: float) -> datetime:
        return self.started_at + timedelta(seconds=t)

    def add(self, t: float, kind: Kind, summary: str, **data: Any) -> Event:
        ev = Event(round(t, 3), kind, summary, data)
        self.events.append(ev)
        return ev

    def point(self, sensor: str, site: str, quantity: str, t: float, value: float) -> None:
        self.sensor_site[sensor] = site
        self.series.setdefault(sensor, {}).setdefault(quantity, []).append((round(t, 3), value))

    def sorted_events(self) -> list[Event]:
        return sorted(self.events, key=lambda e: (e.t, list(Kind).index(e.kind)))

    def warnings(self) -> list[Event]:
        return [e for e in self.sorted_events() if e.kind is Kind.WARNING]

    def to_json(self) -> dict[str, Any]:
        return {
            "drill": True,
            "scenario": self.scenario,
            "deployment": self.deployment,
            "started_at": self.started_at.isoformat(),
            "speed": self.speed,
            "ended_t": self.ended_t,
            "events": [{"t": e.t, "ts": self.at(e.t).isoformat(), "kind": e.kind.value, "summary": e.summary,
                        **e.data} for e in self.sorted_events()],
            "recipients": [asdict(r) for r in sorted(self.recipients.values(), key=_recipient_order)],
            "would_have_been_told": [_untold(r) for r in sorted(self.would_have_been_told.values(),
                                                                 key=_recipient_order)],
            "series": {s: {q: pts for q, pts in qs.items()} for s, qs in self.series.items()},
            "sensor_site": self.sensor_site,
            "sites": self.sites,
            "notes": self.notes,
            "plans": self.plans,
            "figures": figures(self),
        }


_TIER_ORDER = {"city": 0, "county": 1, "township": 2, "village": 3, "group": 4, "household": 5, "site": 6}


def _untold(r: Recipient) -> dict[str, Any]:
    return {"phone": r.phone, "name": r.name, "role": r.role, "area": r.area, "tier": r.tier,
            "first_t": r.first_told_t, "messages": r.messages, "calls": r.calls,
            "asked_to_confirm": r.asked_t is not None, "warnings": r.warnings}


OBSERVER_TIER = "drill"  # a drill recipient in no chain (the drill liaison): copied, not part of the figures


def _recipient_order(r: Recipient) -> tuple:
    return (r.first_told_t if r.first_told_t is not None else 1e18, _TIER_ORDER.get(r.tier, 9), r.phone)


def figures(tl: Timeline) -> dict[str, Any]:
    """The numbers a drill is judged by (None where the drill gave nothing to measure)."""
    issued = [e for e in tl.warnings() if e.data.get("state") == "issued"]
    hazards = [e for e in issued if e.data.get("hazard") != "equipment"]  # equipment faults are not the trigger
    # a drill reaches only its participants: a warning whose chain takes no part tells nobody, so the clock
    # starts at the first warning that reached someone taking part (when the drill knows which did)
    reaching = [e for e in hazards if e.data.get("participants_told")]
    trigger = (reaching or hazards or issued)[0].t if issued else None
    notes = [e for e in tl.sorted_events() if e.kind is Kind.NOTIFICATION and (trigger is None or e.t >= trigger)
             and e.data.get("tier") != OBSERVER_TIER]
    first_note = notes[0].t if notes else None
    told = [r for r in tl.recipients.values() if r.first_told_t is not None and r.tier != OBSERVER_TIER]
    households = {r.phone for r in told if r.tier == "household" or r.role == "household"}
    first_after: dict[str, float] = {}
    by_channel: dict[tuple[str, str], float] = {}  # a red texts AND calls each household
    for e in notes:
        first_after.setdefault(e.data.get("phone", ""), e.t)
        by_channel.setdefault((e.data.get("phone", ""), e.data.get("channel", "")), e.t)
    last_after: dict[str, float] = {}  # a household's fan-out ends with the first message of its last channel
    for (phone, _), t in by_channel.items():
        last_after[phone] = max(t, last_after.get(phone, t))
    reached = [t for p, t in first_after.items() if p in households]
    askable = [r for r in told if r.asked_to_confirm]

    def within(limit_s: float) -> float | None:
        if not askable:
            return None
        ok = [r for r in askable if r.confirmed_t is not None
              and r.confirmed_t - (r.asked_t if r.asked_t is not None else r.first_told_t) <= limit_s]
        return round(len(ok) / len(askable), 4)

    def since(t: float | None) -> float | None:
        return None if t is None or trigger is None else round(t - trigger, 3)

    levels = [Level(e.data["level"]) for e in tl.warnings() if e.data.get("level")]
    every_household = since(max(reached)) if len(reached) == len(households) and reached else None
    # the bound the provider's limits impose on the largest fan-out: segments / (senders × rate), calls / rate.
    # Households are reached by the warning (or the upgrade) that named them, so that is where their fan-out,
    # and the time judged against the bound, starts: the latest warning change before the first household told
    hh_trigger = None
    if reached:
        changes = [e.t for e in hazards + [e for e in tl.warnings() if e.data.get("state") not in ("issued", "lifted")
                                           and e.data.get("hazard") != "equipment"] if e.t <= min(reached)]
        hh_trigger = max(changes, default=None)
    # judged against the bound, which is for the fan-out's last request: each household's last notification
    fanout = (round(max(last_after[p] for p in households) - hh_trigger, 3)
              if hh_trigger is not None and every_household is not None else None)
    bound = max((float(p["last_s"]) for p in tl.plans), default=None) or None
    return {
        "warnings_issued": len(issued),
        "highest_level": max(levels).value if levels else None,
        "trigger_t": trigger,
        "trigger_to_first_notification_s": since(first_note),
        "trigger_to_every_household_s": every_household,
        "household_warning_t": hh_trigger,  # the warning change that reached the households
        "household_warning_to_every_household_s": fanout,
        "limits_bound_s": bound,
        "household_to_bound_ratio": round(fanout / bound, 4) if bound and fanout is not None else None,
        "households_told": len(households),
        "people_told": len(told),
        "would_have_been_told": len(tl.would_have_been_told),  # named by the real routing, not taking part
        "observers_told": sum(1 for r in tl.recipients.values()
                              if r.first_told_t is not None and r.tier == OBSERVER_TIER),
        "asked_to_confirm": len(askable),
        "confirmed": sum(1 for r in askable if r.confirmed_t is not None),
        "never_confirmed": sum(1 for r in askable if r.confirmed_t is None),
        "confirmed_within_5_min": within(300),
        "confirmed_within_15_min": within(900),
        "escalations": sum(1 for e in tl.events if e.kind is Kind.ESCALATION),
        "messages": sum(r.messages for r in told),
        "calls": sum(r.calls for r in told),
    }


def _matches(e: Event, exp: Any, tl: Timeline) -> bool:
    if e.data.get("hazard") != exp.hazard.value:
        return False
    site = e.data.get("site", "")
    if exp.site and site != exp.site:
        return False
    if exp.area:
        area = tl.sites.get(site, {}).get("area", "") or e.data.get("area", "")
        lineage = tl.sites.get(site, {}).get("lineage", [area])
        if exp.area not in lineage and not area.startswith(exp.area):
            return False
    return True


def check_expectations(tl: Timeline, expect: Any) -> list[dict[str, Any]]:
    """Each expectation of the scenario, met or not, with the evidence."""
    out = []
    warns = [e for e in tl.warnings() if e.data.get("state") != "lifted"]
    for exp in expect.warnings:
        hits = [e for e in warns if _matches(e, exp, tl) and Level(e.data["level"]) >= exp.level
                and e.t >= exp.after and (exp.by is None or e.t <= exp.by)]
        first = hits[0] if hits else None
        out.append({"expect": f"{exp.hazard.value} {exp.level.value}+ at {exp.site or exp.area or 'any site'}"
                              f" between {exp.after:.0f}s and {exp.by if exp.by is not None else 'end'}",
                    "met": first is not None, "t": first.t if first else None,
                    "detail": first.summary if first else "no such warning"})
    for exp in expect.none_above:
        over = [e for e in warns if _matches(e, exp, tl) and Level(e.data["level"]) > exp.level]
        out.append({"expect": f"no {exp.hazard.value} warning above {exp.level.value} at "
                              f"{exp.site or exp.area or 'any site'}",
                    "met": not over, "t": over[0].t if over else None,
                    "detail": over[0].summary if over else "none above"})
    for exp in expect.lifted:
        lifted = [e for e in tl.warnings() if e.data.get("state") == "lifted" and _matches(e, exp, tl)]
        out.append({"expect": f"{exp.hazard.value} warning at {exp.site or exp.area} lifted",
                    "met": bool(lifted), "t": lifted[0].t if lifted else None,
                    "detail": lifted[0].summary if lifted else "never lifted"})
    if expect.within_bound_pct is not None:
        f = figures(tl)
        ratio = f["household_to_bound_ratio"]
        out.append({"expect": f"trigger → every household within {expect.within_bound_pct:g} % of the bound the "
                              "provider's limits impose",
                    "met": ratio is not None and abs(ratio - 1) * 100 <= expect.within_bound_pct, "t": None,
                    "detail": f"measured {f['household_warning_to_every_household_s']} s (from the warning that "
                              f"reached the households), bound {f['limits_bound_s']} s, "
                              f"ratio {ratio}"})
    if expect.min_notified:
        n = sum(1 for r in tl.recipients.values() if r.first_told_t is not None and r.tier != OBSERVER_TIER)
        out.append({"expect": f"at least {expect.min_notified} people told", "met": n >= expect.min_notified,
                    "t": None, "detail": f"{n} told"})
    return out
