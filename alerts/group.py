"""Group, inhibit, silence: which warnings become messages. Pure state; no I/O, no clock of its own.

- Grouping: the warnings of one (hazard, site) — several sensors, several rules — form one group (a data-loss
  warning, ``equipment:loss:*``, is a group of its own: it is news about the data, not about the site's devices,
  and must not be inhibited by a silent sensor's warning at the same site). A new
  group is held ``wait_s`` so that what arrives together goes out as one message: the most severe
  member, with every member's evidence.
- Inhibition: once a group has spoken at a level, other members at that level or below are inhibited
  (a red inhibits the yellow of the same site and hazard). A member rising above it is sent at once.
- Lift: when the last active member is lifted, the lift goes out, to everyone the group reached.
- Silences: maintenance windows from config; silenced warnings are logged, not sent.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alerts.config import Silence
from yujing.model import Hazard, HazardWarning, Level, WarningState


class Verdict(enum.StrEnum):
    SEND = "send"
    HOLD = "hold"  # waiting for the rest of its group
    GROUPED = "grouped"  # folded into another member's message
    INHIBITED = "inhibited"  # a more severe member of the group already spoke
    SILENCED = "silenced"
    DUPLICATE = "duplicate"  # this key#version (or an older one) was already seen


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    warning: HazardWarning
    evidence: tuple[str, ...] = ()  # for SEND: the evidence of every member, lead first
    keys: tuple[str, ...] = ()  # for SEND of a lift: every warning key of the group (who to tell)
    by: str = ""  # for GROUPED/INHIBITED: the id of the warning that spoke instead


@dataclass
class Group:
    hazard: Hazard
    site: str  # the site, or the key of a warning grouped alone (see group_of)
    opened: datetime
    members: dict[str, HazardWarning] = field(default_factory=dict)
    flushed: bool = False
    spoken: Level | None = None  # the level last sent
    lead: str = ""  # the id of the warning last sent

    def active(self) -> list[HazardWarning]:
        return [m for m in self.members.values() if m.state is not WarningState.LIFTED]


def group_of(w: HazardWarning) -> tuple[Hazard, str]:
    if w.hazard is Hazard.EQUIPMENT and w.key.startswith("equipment:loss:"):
        return (w.hazard, w.key)
    if w.from_above:  # each warning from above speaks for itself: the city's and the duty office's never merge
        return (w.hazard, w.key)
    return (w.hazard, w.site)


def silenced(silences: list[Silence], w: HazardWarning, at: datetime,
             areas: Callable[[HazardWarning], set[str]] | None = None) -> Silence | None:
    """The first silence over ``w`` (its site, or an area on its chain: ``areas`` gives those ids)."""
    if not silences:
        return None
    chain = areas(w) if areas is not None else ({w.area} if w.area else set())
    return next((s for s in silences if s.matches(w.site, w.hazard, at, chain)), None)


class Grouper:
    def __init__(self, wait_s: float, silences: list[Silence] | None = None,
                 areas: Callable[[HazardWarning], set[str]] | None = None) -> None:
        self.wait = timedelta(seconds=wait_s)
        self.silences = list(silences or [])  # the configured ones, then the duty office's (set by the service)
        self.areas = areas
        self.groups: dict[tuple[Hazard, str], Group] = {}

    def next_due(self) -> datetime | None:
        held = [g.opened + self.wait for g in self.groups.values() if not g.flushed]
        return min(held) if held else None

    def offer(self, w: HazardWarning, now: datetime) -> list[Decision]:
        """Decide about one incoming warning (``now``: scenario time)."""
        gid = group_of(w)
        g = self.groups.get(gid)
        if g is not None:
            prior = g.members.get(w.key)
            if prior is not None and prior.version >= w.version:
                return [Decision(Verdict.DUPLICATE, w)]
        s = silenced(self.silences, w, now, self.areas)
        if s is not None and w.state is not WarningState.LIFTED:
            return [Decision(Verdict.SILENCED, w, by=s.comment)]
        if g is None:
            if w.state is WarningState.LIFTED:  # a lift for a group we never held: tell whoever its key reached
                return [Decision(Verdict.SEND, w, tuple(w.evidence), (w.key,))]
            g = self.groups[gid] = Group(w.hazard, gid[1], now)
            g.members[w.key] = w
            if self.wait.total_seconds() > 0:
                return [Decision(Verdict.HOLD, w)]
            return self._flush(g)
        g.members[w.key] = w
        if not g.flushed:
            return [Decision(Verdict.HOLD, w)]
        active = g.active()
        if w.state is WarningState.LIFTED:
            if active:
                return [Decision(Verdict.INHIBITED, w, by=g.lead)]
            del self.groups[gid]
            return [Decision(Verdict.SEND, w, tuple(w.evidence), tuple(g.members))]
        lead_key = g.lead.split("#")[0]
        if g.spoken is None or w.level > g.spoken or (w.key == lead_key and w.level != g.spoken):
            return [self._speak(g, w)]
        return [Decision(Verdict.INHIBITED, w, by=g.lead)]

    def due(self, now: datetime) -> list[Decision]:
        """Flush every held group whose wait is over."""
        out: list[Decision] = []
        for g in list(self.groups.values()):
            if not g.flushed and g.opened + self.wait <= now:
                out += self._flush(g)
        return out

    def _flush(self, g: Group) -> list[Decision]:
        g.flushed = True
        active = g.active()
        if not active:
            del self.groups[(g.hazard, g.site)]
            return []
        lead = max(active, key=lambda m: (m.level.severity, m.updated_at))
        out = [self._speak(g, lead)]
        out += [Decision(Verdict.GROUPED, m, by=lead.id) for m in active if m is not lead]
        return out

    def _speak(self, g: Group, lead: HazardWarning) -> Decision:
        g.spoken = lead.level
        g.lead = lead.id
        evidence = list(lead.evidence)
        for m in g.active():
            if m is not lead:
                evidence += [e for e in m.evidence if e not in evidence]
        return Decision(Verdict.SEND, lead, tuple(evidence), tuple(g.members))

    def restore(self, w: HazardWarning, spoke: bool, at: datetime) -> None:
        """Rebuild state after a restart from the log: ``w`` was already decided (``spoke``: it was sent)."""
        gid = group_of(w)
        g = self.groups.get(gid)
        if g is None:
            if w.state is WarningState.LIFTED:
                return
            g = self.groups[gid] = Group(w.hazard, gid[1], at, flushed=True)
        g.members[w.key] = w
        if spoke:
            g.spoken, g.lead = w.level, w.id
        if w.state is WarningState.LIFTED and not g.active():
            del self.groups[gid]
