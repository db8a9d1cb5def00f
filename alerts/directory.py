"""The chain as a lookup: people at each node, households under each group. Pure, built once at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from yujing.config.areas import Area, Tier, load_households
from yujing.config.people import Person, Role
from yujing.config.sites import Site

if TYPE_CHECKING:  # the composed deployment (top floor); a type only, never imported at run time
    from yujing.compose import Config


@dataclass
class Directory:
    config: Config
    households: dict[str, list[Person]] = field(default_factory=dict)  # group area id -> households
    _phones: frozenset[str] | None = field(default=None, init=False, repr=False)

    @classmethod
    def load(cls, config: Config) -> Directory:
        """The chain of ``config``; households from ``alerts.households``, else ``households.csv`` if present."""
        path = config.alerts.households
        if path:
            return cls(config, load_households(config.path(path, "")))
        default = config.base_dir / "households.csv"
        return cls(config, load_households(default) if default.exists() else {})

    def site(self, site_id: str) -> Site | None:
        try:
            return self.config.site(site_id)
        except KeyError:
            return None

    def area(self, area_id: str) -> Area | None:
        try:
            return self.config.area(area_id)
        except KeyError:
            return None

    def ancestor(self, area_id: str, tier: Tier) -> Area | None:
        """The node of ``tier`` on the path from ``area_id`` up to the city (itself included)."""
        if self.area(area_id) is None:
            return None
        return next((a for a in self.config.lineage(area_id) if a.tier is tier), None)

    def under(self, area_id: str, tier: Tier) -> list[Area]:
        """Every node of ``tier`` at or below ``area_id``, in configuration order."""
        start = self.area(area_id)
        if start is None:
            return []
        if start.tier is tier:
            return [start]
        out: list[Area] = []
        stack = [start]
        while stack:
            node = stack.pop(0)
            for child in self.config.children(node.id):
                if child.tier is tier:
                    out.append(child)
                elif child.tier.depth < tier.depth:
                    stack.append(child)
        return out

    def households_under(self, area_id: str) -> list[tuple[Area, Person]]:
        out: list[tuple[Area, Person]] = []
        for group in self.under(area_id, Tier.GROUP):
            out += [(group, p) for p in self.households.get(group.id, [])]
        return out

    def people(self, area_id: str, roles: list[Role] | None = None) -> list[Person]:
        area = self.area(area_id)
        if area is None:
            return []
        return [p for p in area.people if not roles or p.role in roles]

    def knows(self, phone: str) -> bool:
        """``phone`` belongs to someone in the chain (an area's or a site's people, or a household)."""
        if self._phones is None:
            phones = {p.phone for a in self.config.areas for p in a.people}
            phones |= {p.phone for s in self.config.sites for p in s.people}
            phones |= {p.phone for people in self.households.values() for p in people}
            self._phones = frozenset(phones)
        return phone in self._phones

    def parent(self, area_id: str) -> Area | None:
        area = self.area(area_id)
        return self.area(area.parent) if area is not None and area.parent else None
