"""The life of one warning: pending → firing → upgraded/downgraded → lifted (解除).

Shared by every pack. A pack says, for a key at a time, which level its condition calls for
(``None``: nothing); :class:`Lifecycle` decides what is *issued*:

- a new condition waits ``for_s`` (pending) before the first issue, like a Prometheus rule's ``for``;
- an upgrade goes out at once;
- a downgrade or lift goes out only after the condition has stayed below the current level for
  ``clear_after_s``, and then to the highest level called for during that hold, so a value
  hovering at a threshold does not flap.

Pure: no clock, no I/O. State is plain data so it persists as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rules.config import Mechanics
from yujing.model import Level, WarningState


# A level's value to the member and its severity by dict: ``Level(v)`` goes through the enum machinery, and a
# lifecycle is updated on nearly every reading once its warning is in force (~4 % of the rules service's CPU).
_LEVEL: dict[str | None, Level | None] = {None: None, **{lv.value: lv for lv in Level}}
_SEVERITY: dict[str | None, int] = {None: 0, **{lv.value: lv.severity for lv in Level}}


def _lv(v: str | None) -> Level | None:
    got = _LEVEL.get(v)
    return got if got is not None or v is None else Level(v)  # anything else: Level's own error


def _sev(v: str | None) -> int:
    got = _SEVERITY.get(v)
    return got if got is not None else Level(v).severity  # type: ignore[arg-type]


@dataclass
class Lifecycle:
    """Persisted state of one key. Times are POSIX seconds (scenario time)."""

    version: int = 0  # last version issued; never goes back, across episodes too
    level: str | None = None  # the level currently in force (None: nothing issued, or lifted)
    issued_at: float = 0.0  # start of the current episode
    updated_at: float = 0.0  # last message
    pending_since: float | None = None
    # while in force: change points (t, level called for) covering at least the last clear_after_s
    history: list[list[Any]] = field(default_factory=list)
    last_t: float = 0.0  # latest evaluation time; older evaluations are treated as happening now
    drill: bool = False

    @property
    def active(self) -> Level | None:
        return _lv(self.level)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Lifecycle:
        return cls(**d)

    def update(self, want: Level | None, t: float, mech: Mechanics) -> WarningState | None:
        """The condition calls for ``want`` at ``t``: the transition to issue, if any (self is updated)."""
        t = max(t, self.last_t)
        self.last_t = t
        current = self.level
        history = self.history
        if want is not None and want == current and history and history[-1][1] == current:
            # the level in force called for again (most readings once a warning is out): no change point, so the
            # hold's highest level is at least this one, and nothing is issued; only the history is trimmed
            while len(history) > 1 and history[1][0] <= t - mech.clear_after_s:
                history.pop(0)
            return None
        if current is None:
            if want is None:
                self.pending_since = None
                return None
            if self.pending_since is None:
                self.pending_since = t
            if t - self.pending_since < mech.for_s:
                return None
            self.pending_since = None
            self._set(want, t)
            self.issued_at = t
            return WarningState.ISSUED
        if want is not None and want.severity > _sev(current):
            self._set(want, t)
            return WarningState.UPGRADED
        self._record(want, t, mech.clear_after_s)
        target = self._held_target(t, mech.clear_after_s)
        if target is None or target >= _sev(current):
            return None
        if target == 0:
            self.level = None
            self.history = []
            self.version += 1
            self.updated_at = t
            return WarningState.LIFTED
        level = next(lv for lv in Level if lv.severity == target)
        self._set(level, t, keep_history=True)
        return WarningState.DOWNGRADED

    def _set(self, level: Level, t: float, keep_history: bool = False) -> None:
        self.level = level.value
        self.version += 1
        self.updated_at = t
        if not keep_history:
            self.history = [[t, level.value]]

    def _record(self, want: Level | None, t: float, hold_s: float) -> None:
        value = None if want is None else want.value
        if not self.history or self.history[-1][1] != value:
            self.history.append([t, value])
        # keep one change point at or before the start of the hold window
        while len(self.history) > 1 and self.history[1][0] <= t - hold_s:
            self.history.pop(0)

    def _held_target(self, t: float, hold_s: float) -> int | None:
        """Highest severity called for over [t - hold_s, t], or None if history does not cover it yet."""
        history = self.history
        if not history or history[0][0] > t - hold_s:
            return None
        sev = _SEVERITY
        return max([sev[v] if v in sev else _sev(v) for _, v in history])


def grade(value: float, cuts: dict[Level, float], current: Level | None, hysteresis: float,
          relative: bool = False) -> Level | None:
    """The highest level whose cut ``value`` reaches. A level at or below ``current`` is kept until
    ``value`` falls ``hysteresis`` below its cut (a fraction of the cut if ``relative``), so noise at
    a threshold does not flap."""
    best: Level | None = None
    for lv, cut in cuts.items():
        margin = abs(cut) * hysteresis if relative else hysteresis
        reach = cut - margin if current is not None and lv <= current else cut
        if value >= reach and (best is None or lv > best):
            best = lv
    return best


def max_level(*levels: Level | None) -> Level | None:
    present = [lv for lv in levels if lv is not None]
    return max(present) if present else None


def step(level: Level, by: int, cap: Level = Level.RED) -> Level:
    sev = min(max(level.severity + by, 1), cap.severity)
    return next(lv for lv in Level if lv.severity == sev)
