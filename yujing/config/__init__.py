"""Configuration, the ground floor's part: YAML validated once at load; everything past here is typed.

This package knows the sections every part shares (``deployment``, ``mqtt``, ``areas``, ``sites``) and how
to read and validate YAML with file:line errors. It imports no stage: each part defines its own section
(``edge/config.py``, ``collector/config.py``, ...) and the whole deployment's :class:`Config` is composed
at the top floor, in :mod:`yujing.compose`:

    from yujing.compose import load_config
    cfg = load_config("config/zhongxian")   # a directory of YAML files, or one file
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from yujing.config.areas import Area, Tier
from yujing.config.loader import Loc, problems_at, read_merged, validate
from yujing.config.mqtt import MqttConfig
from yujing.config.people import Channel, Person, Role
from yujing.config.secrets import Secret
from yujing.config.sites import Site, SiteKind
from yujing.errors import ConfigError

__all__ = [
    "Area", "BaseConfig", "Channel", "ConfigError", "Deployment", "MqttConfig", "Person",
    "Role", "Secret", "Site", "SiteKind", "Tier", "load",
]


class Deployment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "yujing"
    timezone: str = "Asia/Shanghai"
    data_dir: str = "var"  # relative to the config directory unless absolute


class BaseConfig(BaseModel):
    """The sections every part shares; :class:`yujing.compose.Config` adds each part's own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment: Deployment = Field(default_factory=Deployment)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    areas: list[Area] = Field(default_factory=list)
    sites: list[Site] = Field(default_factory=list)

    _base_dir: Path = PrivateAttr(default=Path("."))

    @property
    def base_dir(self) -> Path:
        """The directory the configuration was loaded from; relative paths resolve here."""
        return self._base_dir

    def path(self, value: str, default_name: str) -> Path:
        """A data path: ``value`` if set, else ``<data_dir>/<default_name>``; relative to the config dir."""
        data_dir = Path(self.deployment.data_dir)
        if not data_dir.is_absolute():
            data_dir = self._base_dir / data_dir
        if not value:
            return data_dir / default_name
        p = Path(value)
        return p if p.is_absolute() else self._base_dir / p

    def site(self, site_id: str) -> Site:
        return self._sites[site_id]

    def area(self, area_id: str) -> Area:
        return self._areas[area_id]

    def lineage(self, area_id: str) -> list[Area]:
        """The area and its ancestors, nearest first: group, village, township, county, city."""
        out = []
        node: str | None = area_id
        while node is not None:
            area = self._areas[node]
            out.append(area)
            node = area.parent
        return out

    def children(self, area_id: str) -> list[Area]:
        return self._children.get(area_id, [])

    def model_post_init(self, _ctx: Any) -> None:
        self._sites = {s.id: s for s in self.sites}
        self._areas = {a.id: a for a in self.areas}
        self._children: dict[str, list[Area]] = {}
        for a in self.areas:
            if a.parent is not None:
                self._children.setdefault(a.parent, []).append(a)

    def cross_check(self) -> Iterator[tuple[Loc, str]]:
        """References between sections: what pydantic alone cannot see."""
        yield from unique(self.areas, "areas")
        yield from unique(self.sites, "sites")
        for i, a in enumerate(self.areas):
            if a.parent is not None:
                parent = self._areas.get(a.parent)
                if parent is None:
                    yield ("areas", i, "parent"), f"no area with id {a.parent!r}"
                elif parent.tier.depth >= a.tier.depth:
                    yield ("areas", i, "parent"), f"a {a.tier} cannot sit under a {parent.tier} ({a.parent})"
        for i, a in enumerate(self.areas):  # cycles make lineage() loop forever
            seen, node = set(), a.id
            while node is not None and node in self._areas and node not in seen:
                seen.add(node)
                node = self._areas[node].parent
            if node is not None and node in seen:
                yield ("areas", i, "parent"), "the parent chain loops back on itself"
        codes: dict[str, str] = {}
        for i, a in enumerate(self.areas):
            if a.code is not None:
                if a.code in codes:
                    yield ("areas", i, "code"), f"code {a.code!r} is already {codes[a.code]!r}'s"
                codes.setdefault(a.code, a.id)
        for i, s in enumerate(self.sites):
            if s.area not in self._areas:
                yield ("sites", i, "area"), f"no area with id {s.area!r}"


def unique(items: list[Any], section: str) -> Iterator[tuple[Loc, str]]:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.id in seen:
            yield (section, i, "id"), f"id {item.id!r} is used twice"
        seen.add(item.id)


M = TypeVar("M", bound=BaseConfig)


def load(path: str | Path, model: type[M]) -> M:
    """Load and validate a deployment as ``model``; raises :class:`ConfigError` naming file, line and field."""
    path = Path(path)
    data, marks = read_merged(path)
    base = path if path.is_dir() else path.parent
    cfg = validate(model, data, marks, context={"base_dir": base})
    cfg._base_dir = base
    problems = problems_at(marks, data, cfg.cross_check())
    if problems:
        raise ConfigError(problems)
    return cfg

