"""Route: who is told of a warning, by the six-level chain and the policy. Pure: (warning, directory) → recipients."""

from __future__ import annotations

from dataclasses import dataclass, field

from alerts.config import AlertsConfig, Scope, Target
from alerts.directory import Directory
from alerts.nflog.states import NodeTier
from alerts.policy import targets
from yujing.config.areas import Tier
from yujing.config.people import Channel, Person
from yujing.model import Hazard, HazardWarning


@dataclass(frozen=True)
class Recipient:
    """One person to tell, where they sit (``node``: an area id, or ``site:<id>``), how, and whether to confirm."""

    person: Person
    node: str
    tier: NodeTier  # the site's, or a level of the chain: for the text ("村责任人") and for escalation
    channels: tuple[Channel, ...]
    ack: bool = False
    reason: str = ""  # '' for the policy; 'deputy of …' / 'escalated from …' for escalation

    @property
    def phone(self) -> str:
        return self.person.phone


@dataclass
class Routed:
    recipients: list[Recipient] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unknown site/area, empty levels: logged, counted


def _channels(target: Target, person: Person) -> tuple[Channel, ...]:
    """The target's channels the person can use; their preferred one if none overlap."""
    usable = [c for c in target.channels if c in person.channels]
    return tuple(usable) if usable else (person.channels[0] if person.channels else Channel.SMS,)


def route(warning: HazardWarning, directory: Directory, cfg: AlertsConfig) -> Routed:
    """A site's warning goes to the site's people and up its chain; a warning addressed to an area node (site
    empty: a warning from above) goes up from the node as well, and down to every node of each tier below it
    that the policy names (a township's orange: each of its villages' responsible people, every group leader)."""
    out = Routed()
    site = directory.site(warning.site) if warning.site else None
    area_id = warning.area or (site.area if site else "")
    addressed = not warning.site and bool(warning.area)
    start = directory.area(area_id) if addressed else None
    # an equipment warning may have no place in the chain: a central component (the collector) is no site.
    # It goes to the offices over every place (county, city), never to nobody
    central = warning.hazard is Hazard.EQUIPMENT and site is None and not warning.area
    if site is None and not central and not addressed:
        out.problems.append(f"site {warning.site!r} is not configured")
    if directory.area(area_id) is None and not central:
        out.problems.append(f"area {area_id!r} is not configured")
    found: list[Recipient] = []
    for target in targets(cfg, warning.hazard, warning.level):
        if target.scope is Scope.SITE:
            if site is not None:
                found += [Recipient(p, f"site:{site.id}", NodeTier.SITE, _channels(target, p), target.ack)
                          for p in site.people if not target.roles or p.role in target.roles]
            continue
        tier = target.scope.tier
        assert tier is not None
        if tier in (Tier.GROUP, Tier.HOUSEHOLD):
            root = directory.ancestor(area_id, target.within) or directory.area(area_id)
            if root is None:
                continue
            if tier is Tier.HOUSEHOLD:
                found += [Recipient(p, g.id, Tier.HOUSEHOLD.value, _channels(target, p), target.ack)
                          for g, p in directory.households_under(root.id)]
                continue
            for group in directory.under(root.id, Tier.GROUP):
                found += [Recipient(p, group.id, NodeTier.of(tier), _channels(target, p), target.ack)
                          for p in directory.people(group.id, target.roles)]
            continue
        node = directory.ancestor(area_id, tier)
        nodes = [node] if node is not None else []
        if start is not None and tier.depth > start.tier.depth:
            nodes = directory.under(start.id, tier)
        if central and tier.depth <= Tier.COUNTY.depth:
            nodes = [a for a in directory.config.areas if a.tier is tier]
        for node in nodes:
            found += [Recipient(p, node.id, NodeTier.of(tier), _channels(target, p), target.ack)
                      for p in directory.people(node.id, target.roles)]
    out.recipients = merge(found)
    if not out.recipients:
        out.problems.append(f"nobody to tell of {warning.key} (level {warning.level.value}): check the policy and the chain")
    return out


def merge(found: list[Recipient]) -> list[Recipient]:
    """One recipient per phone: the first place they were found, every channel asked for, confirm if any asks."""
    by_phone: dict[str, Recipient] = {}
    for r in found:
        seen = by_phone.get(r.phone)
        if seen is None:
            by_phone[r.phone] = r
            continue
        channels = tuple(dict.fromkeys(seen.channels + r.channels))
        by_phone[r.phone] = Recipient(seen.person, seen.node, seen.tier, channels, seen.ack or r.ack, seen.reason)
    return list(by_phone.values())


@dataclass
class DrillRouted:
    """A drill's routing: the real routing of the warning, cut down to the people taking part.

    ``told`` are the participants the real routing names, with its channels and 叫应, plus observers;
    ``untold`` are the people the real routing names who do not take part: they *would have been told*,
    and are reported as such, never contacted.
    """

    told: list[Recipient] = field(default_factory=list)
    untold: list[Recipient] = field(default_factory=list)


OBSERVER = "observer"  # Recipient.reason of a drill observer's copy


def drill_route(found: list[Recipient], people: list[Person], directory: Directory,
                observers: bool = True) -> DrillRouted:
    """Restrict ``found`` (what :func:`route` or an escalation step named) to the drill's ``people``.

    A participant is matched by phone, so they hear exactly what the real warning would tell them (an SMS
    for a blue, a call that asks for 叫应 for an orange) and nothing for a warning the chain would not
    bring to them. A drill recipient who is nowhere in the chain (the county's drill liaison) is an
    observer: with ``observers`` they get an SMS copy of the warning, never a call, never a 叫应.
    """
    taking_part = {p.phone for p in people}
    out = DrillRouted()
    for r in found:
        (out.told if r.phone in taking_part else out.untold).append(r)
    if observers:
        out.told += [Recipient(p, "drill", "drill", (Channel.SMS,), False, OBSERVER)
                     for p in people if not directory.knows(p.phone)]
    out.told = merge(out.told)
    return out
