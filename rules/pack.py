"""The seam every rule pack shares, and the registry that names them.

A pack is a pure, incremental evaluator: it keeps per-sensor state, takes one reading (or a tick of
the clock) and says which level each of its conditions now calls for, with the evidence. It never
issues anything itself: the engine runs every :class:`Assessment` through the shared lifecycle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from prometheus_client import Counter

from yujing.model import Hazard, Level, Reading

IGNORED = Counter("yujing_rules_ignored_total", "Readings a rule pack set aside (late, duplicate, implausible)",
                  ["pack", "reason"])


def ignored(pack: str, reason: str) -> None:
    """Count a reading a pack did not use, by reason (exported as a Prometheus counter)."""
    IGNORED.labels(pack, reason).inc()

if TYPE_CHECKING:
    from rules.config import Mechanics
    from yujing.compose import Config  # the composed deployment (top floor); a type only


@dataclass
class Assessment:
    """What a condition calls for now. ``level=None``: nothing (or no longer)."""

    key: str  # stable per condition, e.g. "rainstorm:RG-ZZ-001"
    hazard: Hazard
    site: str
    level: Level | None
    mechanics: Mechanics
    rule: str = ""
    title: str = ""
    evidence: list[str] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)
    t: float = 0.0  # POSIX seconds the assessment holds for
    drill: bool = False
    # (title, evidence) on demand, instead of ``title``/``evidence``: most assessments change nothing and are
    # dropped, so a pack judging every reading may leave the wording to the few that become a message
    explain: Callable[[], tuple[str, list[str]]] | None = field(default=None, repr=False, compare=False)
    # ``values`` on demand, likewise (made when the message is, in the same Engine.feed)
    measure: Callable[[], dict[str, float]] | None = field(default=None, repr=False, compare=False)

    def wording(self) -> tuple[str, list[str]]:
        """The title and evidence, however the pack gave them."""
        return self.explain() if self.explain is not None else (self.title, self.evidence)

    def figures(self) -> dict[str, float]:
        """The values, however the pack gave them."""
        return self.measure() if self.measure is not None else self.values


class Context(Protocol):
    """What a pack may ask of the engine: configuration and the levels in force."""

    config: Config

    def active(self, key: str) -> Level | None: ...

    def tracks(self, key: str) -> bool:
        """The condition has a lifecycle (in force, pending or once issued): its assessments count even when
        they call for nothing. Without one, an assessment calling for nothing is dropped by the engine."""
        ...


class Pack(Protocol):
    name: ClassVar[str]
    quantities: ClassVar[frozenset[str]]  # readings of these quantities are fed to the pack

    def feed(self, reading: Reading, ctx: Context) -> list[Assessment]: ...

    def tick(self, now: datetime, ctx: Context) -> list[Assessment]: ...

    def dump(self) -> dict[str, Any]:
        """JSON-ready state of the entities changed since the last dump, by entity id."""
        ...

    def load(self, entity: str, state: dict[str, Any]) -> None:
        """Restore one entity's state; raise TypeError/ValueError if it does not fit (it is dropped)."""
        ...

    def problems(self, config: Config) -> Iterable[str]:
        """Configuration this pack cannot evaluate (e.g. a reservoir without levels): reported, not fatal."""
        ...

    # optional: heartbeat(gateway, online, now, ctx) for gateway status (equipment);
    # on_warning(warning, ctx) -> list[Assessment] to follow another pack's warnings (landslide ← rain)


REGISTRY: dict[str, Callable[[Config], Pack]] = {}


def register(cls: type) -> type:
    REGISTRY[cls.name] = cls
    return cls
