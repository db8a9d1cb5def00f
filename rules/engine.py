"""The engine: readings and clock ticks in, versioned :class:`HazardWarning` messages out.

    engine = Engine(config, store=StateStore(path))      # state restored from the store
    warnings = engine.feed(reading, now)                 # incremental, per reading (now: when it arrived)
    warnings += engine.tick(now)                         # time-driven: silence, lifts of fire alarms
    engine.commit(warnings)                              # state + outbox, one transaction

Packs (rules/rain.py, ...) judge conditions; :mod:`rules.lifecycle` decides what is issued; this
module only routes between them and dresses transitions as messages. No I/O but the optional store.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

# importing the packs registers them
from rules import equipment, fire, landslide, levels, plausible, rain  # noqa: F401
from rules.lifecycle import Lifecycle
from rules.pack import REGISTRY, Assessment, Pack
from rules.store import StateStore
from yujing.model import Hazard, HazardWarning, Level, Quality, Reading, WarningState

if TYPE_CHECKING:  # the composed deployment (top floor); a type only, never imported at run time
    from yujing.compose import Config

log = logging.getLogger("yujing.rules")


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class Engine:
    def __init__(self, config: Config, store: StateStore | None = None, drill: bool = False,
                 packs: list[str] | None = None) -> None:
        self.config = config
        self.store = store
        self.drill = drill
        self.packs: dict[str, Pack] = {name: make(config) for name, make in REGISTRY.items()
                                       if packs is None or name in packs}
        self._drills: Engine | None = None  # drill-marked readings on a live system: see feed()
        self.by_quantity: dict[str, list[Pack]] = {}
        self.every: list[Pack] = []
        self._hazards: dict[str, list[Pack]] = {}  # quantity -> the hazard packs it goes to (not the "*" ones)
        for pack in self.packs.values():
            if "*" in pack.quantities:
                self.every.append(pack)
            for q in pack.quantities:
                self.by_quantity.setdefault(q, []).append(pack)
        self.lifecycles: dict[str, Lifecycle] = {}
        self.arrived: float | None = None  # while feeding: when the reading arrived (None: at its own time)
        self.reading_t: float | None = None  # while feeding: the reading's ts as POSIX seconds, worked out once
        self._now: datetime | None = None  # the last arrival time fed, and its POSIX seconds
        self._now_t = 0.0
        self.implausible: str | None = None  # while feeding: why the reading is kept from the hazard packs
        self.plausibility = self.packs.get(plausible.Plausibility.name)
        self._dirty: set[str] = set()
        self.sites = {s.id for s in config.sites}
        if store is not None:
            self._restore(store)

    # --- what packs may ask --------------------------------------------------------------------
    def active(self, key: str) -> Level | None:
        lc = self.lifecycles.get(key)
        return lc.active if lc else None

    def tracks(self, key: str) -> bool:
        return key in self.lifecycles

    def in_force(self) -> dict[str, Level]:
        return {k: lc.active for k, lc in self.lifecycles.items() if lc.active is not None}

    def problems(self) -> list[str]:
        return [p for pack in self.packs.values() for p in pack.problems(self.config)]

    # --- input ---------------------------------------------------------------------------------
    def feed(self, reading: Reading, now: datetime | None = None) -> list[HazardWarning]:
        """Judge one reading; the warnings it causes (issued, upgraded, downgraded, lifted).

        ``now``: when it arrived, on the clock :meth:`tick` is given. Hazards are judged on the
        reading's own time; a device's silence is counted from arrival, so a gateway whose clock is
        behind does not look silent. A backtest leaves it out: the reading's time is then now.
        """
        if reading.drill and not self.drill:
            return self.drills().feed(reading, now)
        if now is None:
            self.arrived = None
        elif now is self._now:  # (the service hands every reading of a message the same arrival time)
            self.arrived = self._now_t
        else:
            self._now, self._now_t = now, now.timestamp()
            self.arrived = self._now_t
        self.reading_t = reading.ts.timestamp()  # the packs' copy (a pack fed by hand works it out itself)
        # one verdict for every pack: a reading the edge flagged or that its sensor cannot read raises the
        # equipment fault (the equipment pack reads self.implausible) and never reaches a hazard pack
        if self.plausibility is not None:
            self.implausible = self.plausibility.judge(reading)
        else:
            self.implausible = None if reading.quality is Quality.OK else reading.quality.value
        out: list[Assessment] = []
        try:
            for pack in self.every:
                out += pack.feed(reading, self)
            hazards = self._hazards.get(reading.quantity)
            if hazards is None:
                hazards = self._hazards[reading.quantity] = [p for p in self.by_quantity.get(reading.quantity, ())
                                                             if p not in self.every]
            if self.implausible is None:
                for pack in hazards:
                    out += pack.feed(reading, self)
            elif hazards and self.plausibility is not None:
                self.plausibility.exclude(reading, self.implausible)
        finally:
            self.arrived = None
            self.implausible = None
            self.reading_t = None
        return self._apply(out)

    def drills(self) -> Engine:
        """Where drill-marked readings on a live system go (a gateway put in drill mode for a field exercise).

        An engine of their own, so a drill never adds to a real accumulation, never turns a real episode into
        a drill one (its warnings would then go to the drill's recipients only) and is never lifted by real
        readings. It judges hazards only (the equipment pack would call every device it never heard from
        silent) and keeps its state in memory: a restart forgets a drill in progress, never a real warning.
        """
        if self._drills is None:
            self._drills = Engine(self.config, drill=True, packs=[n for n in self.packs if n != "equipment"])
        return self._drills

    def heartbeat(self, gateway: str, online: bool, now: datetime) -> list[HazardWarning]:
        """A gateway's status message: it is alive (or its last will says it is offline)."""
        out: list[Assessment] = []
        for pack in self.every:
            beat = getattr(pack, "heartbeat", None)
            if beat is not None:
                out += beat(gateway, online, now, self)
        return self._apply(out)

    def loss(self, component: str, dropped: int, reason: str, now: datetime) -> list[HazardWarning]:
        """A component's cumulative count of readings it had to drop (a gateway, a collector)."""
        out: list[Assessment] = []
        for pack in self.every:
            report = getattr(pack, "loss", None)
            if report is not None:
                out += report(component, dropped, reason, now, self)
        return self._apply(out)

    def tick(self, now: datetime) -> list[HazardWarning]:
        out: list[Assessment] = []
        for pack in self.packs.values():
            out += pack.tick(now, self)
        return self._apply(out) + (self._drills.tick(now) if self._drills is not None else [])

    # --- lifecycle -----------------------------------------------------------------------------
    def _apply(self, assessments: list[Assessment]) -> list[HazardWarning]:
        issued: list[HazardWarning] = []
        while assessments:
            a = assessments.pop(0)
            lc = self.lifecycles.get(a.key)
            if lc is None:
                if a.level is None:
                    continue
                lc = self.lifecycles[a.key] = Lifecycle()
            before = lc.active
            state = lc.update(a.level, a.t, a.mechanics)
            self._dirty.add(a.key)
            if lc.active is not None or state is not None:
                # a live engine sees no drill reading (feed sends them to drills()); an episode restored from
                # before that stays a drill one until its lift
                lc.drill = lc.drill or self.drill
            if state is None:
                continue
            w = self._message(a, lc, state, before)
            issued.append(w)
            if state is WarningState.LIFTED:
                lc.drill = self.drill
            for pack in self.packs.values():
                follow = getattr(pack, "on_warning", None)
                if follow is not None:
                    assessments += follow(w, self)
        return issued

    def _message(self, a: Assessment, lc: Lifecycle, state: WarningState, before: Level | None) -> HazardWarning:
        level = lc.active if lc.active is not None else before
        assert level is not None
        a_title, a_evidence = a.wording()
        title = a_title if a_title and a.level == level else self._title(a, level)
        evidence = list(a_evidence)
        held = (f"持续 {a.mechanics.clear_after_s / 60:.0f} 分钟" if a.mechanics.clear_after_s >= 60
                else "已")
        if state is WarningState.LIFTED:
            title = f"{self._title(a, level)}解除"
            evidence.insert(0, f"{held}低于{level.chinese}预警条件, 预警解除")
        elif state is WarningState.DOWNGRADED:
            evidence.insert(0, f"由{before.chinese if before else ''}降为{level.chinese}: {held}低于原级别条件")
        values = a.figures()
        if a.hazard is not Hazard.EQUIPMENT and self.plausibility is not None:
            notes, n = self.plausibility.notes(a.site, a.t)
            if n:
                evidence += notes
                values = {**values, "excluded_readings": float(n)}
        area = self.config.site(a.site).area if a.site in self.sites else ""
        return HazardWarning(
            key=a.key, version=lc.version, hazard=a.hazard, level=level, state=state, site=a.site, area=area,
            rule=a.rule, title=title, evidence=evidence, values=values, issued_at=_utc(lc.issued_at),
            updated_at=_utc(lc.updated_at), drill=lc.drill)

    def _title(self, a: Assessment, level: Level) -> str:
        name = self._site_name(a.site)
        what = a.hazard.chinese
        return f"{name}{what if not name.endswith(what) else ''}{level.chinese}预警"

    def _site_name(self, site: str) -> str:
        return self.config.site(site).name if site in self.sites else site

    # --- persistence ---------------------------------------------------------------------------
    def dirty_state(self, packs_too: bool = True) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        packs = {name: pack.dump() for name, pack in self.packs.items()} if packs_too else {}
        lcs = {k: self.lifecycles[k].to_json() for k in self._dirty}
        self._dirty.clear()
        return {k: v for k, v in packs.items() if v}, lcs

    def commit(self, warnings: list[HazardWarning], packs_too: bool = True) -> None:
        """Persist what changed and queue ``warnings`` for publication, in one transaction.

        Warning lifecycles and the outbox are always written. ``packs_too=False`` leaves the packs'
        evaluation state (rain windows, displacement samples) for a later commit (bench/rules.py
        measures both). The service saves everything at once instead (:meth:`dirty_state`), and
        acknowledges the readings only when that is done, so a crash loses none of them.
        """
        if self.store is None:
            for pack in self.packs.values():
                pack.dump()  # nothing to write to: just forget what changed
            self._dirty.clear()
            return
        packs, lcs = self.dirty_state(packs_too)
        if packs or lcs or warnings:
            self.store.save(packs, lcs, warnings)

    def _restore(self, store: StateStore) -> None:
        n = 0
        for pack, entity, data in store.pack_states():
            if pack in self.packs:
                try:
                    self.packs[pack].load(entity, data)
                    n += 1
                except (TypeError, ValueError) as e:
                    log.warning("rules state: dropped unreadable %s state of %s: %s", pack, entity, e)
        for p in self.packs.values():
            restored = getattr(p, "restored", None)  # optional: a pack whose entities span several rows
            if restored is not None:
                restored()
        for key, data in store.lifecycles():
            self.lifecycles[key] = Lifecycle.from_json(data)
        log.info("rules state restored", extra={"kv": {
            "entities": n, "in_force": len(self.in_force()), "path": str(store.path)}})


__all__ = ["Engine", "Hazard"]
