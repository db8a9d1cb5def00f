"""Which readings the hazard packs may trust: one check, before any pack sees a reading.

A reading the edge flagged (quality not ``ok``) or one outside what its sensor can read
(``rules.plausible``, per quantity, overridable per site) is a fault of the equipment, never a
measurement: 999 mm of rain in a 5-min step must not issue a red rainstorm, a reservoir at 9999 m
not a red reservoir warning, and negative rain must not cancel real rain. The engine asks
:meth:`Plausibility.judge` first; the equipment pack raises the fault from its verdict, the hazard
packs never see the reading, and every hazard warning of the site says, for a day, that data was
excluded (:meth:`Plausibility.notes`). Deciding this once here, not in each pack, keeps a pack added
later from trusting what the others refuse.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import ValidationError

from rules.config import Bounds, PlausibleThresholds, Resolver
from rules.pack import Assessment, Context, ignored, register
from rules.state import States
from yujing.errors import ConfigError
from yujing.log import Limiter
from yujing.model import Quality, Reading

log = logging.getLogger("yujing.rules")

ENVELOPE_EXP = 0.475  # world-record rainfall grows as D^0.475 with the duration D (Jennings 1950)
ABOVE_CREST_M = 10.0  # a reservoir's level more than this above its crest (or 校核洪水位) is no reading
KEEP_S = 86400.0  # exclusions are named in the site's warnings until a day passes without one
_QUALITY = {Quality.STUCK: "数值卡死", Quality.OUT_OF_RANGE: "数值超出量程", Quality.COMM_ERROR: "通信故障"}


@dataclass
class SiteExclusions:
    since: float = 0.0  # the first exclusion of this run (a run ends after a day without one)
    last_t: float = 0.0
    count: int = 0  # excluded in this run
    last_why: str = ""


def _fmt(v: float) -> str:
    return f"{v:g}"


def out_of_bounds(value: float, b: Bounds, interval_s: float | None) -> str | None:
    """Why ``value`` cannot be a reading of a sensor with bounds ``b``, or None."""
    if value != value:
        return "数值无效 (NaN)"
    if b.min is not None and value < b.min:
        return f"数值 {_fmt(value)} 低于合理下限 {_fmt(b.min)}"
    if b.max is not None and value > b.max:
        return f"数值 {_fmt(value)} 高于合理上限 {_fmt(b.max)}"
    if b.max_1h is not None and interval_s:
        limit = b.max_1h * (interval_s / 3600.0) ** ENVELOPE_EXP
        if value > limit:
            return f"数值 {_fmt(value)} 超过 {interval_s / 60:g} 分钟时段的合理上限 {limit:.1f}"
    return None


@register
class Plausibility:
    """Not a hazard: the engine consults it before routing (``quantities`` is empty, so nothing is routed here)."""

    name: ClassVar[str] = "plausible"
    quantities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: Any) -> None:
        self.sites = {s.id: s for s in config.sites}
        self.resolver = Resolver(config.rules, self.sites)
        self.intervals: dict[str, float] = {d.id: d.interval_s for gw in config.gateways for d in gw.devices}
        self.states: States[SiteExclusions] = States(SiteExclusions)
        self._bounds: dict[tuple[str, str], Bounds | None] = {}
        # a site's bounds merged with the deployment's may contradict (min above the default max): say so now,
        # naming the site, not in the middle of a storm
        problems = []
        for s in config.sites:
            try:
                self.resolver.get("plausible", s.id)
            except ValidationError as e:
                problems.append(f"site {s.id}: thresholds.plausible with rules.plausible: {e.errors()[0]['msg']}")
        if problems:
            raise ConfigError(problems)
        self.limiter = Limiter()  # one log line per sensor a minute: a broken gauge may send every few seconds
        # (site, quantity, sensor) -> (its bounds, its device's interval): see judge
        self._judged: dict[tuple[str, str, str], tuple[Bounds | None, float | None]] = {}

    def bounds(self, site: str, quantity: str) -> Bounds | None:
        got = self._bounds.get((site, quantity))
        if got is None and (site, quantity) not in self._bounds:
            got = self._bounds[(site, quantity)] = self._derive(site, quantity)
        return got

    def _derive(self, site: str, quantity: str) -> Bounds | None:
        thr: PlausibleThresholds = self.resolver.get("plausible", site)
        b = thr.of(quantity)
        s = self.sites.get(site)
        if quantity != "level_m" or s is None or s.kind != "reservoir":
            return b
        own = s.thresholds.plausible
        if own is not None and own.level_m is not None and "max" in own.level_m.model_fields_set:
            return b  # the site's survey says what its gauge can read
        # no water stands far above a dam's crest (it would have failed first): a reservoir that knows its
        # crest bounds its level by it, even where nobody wrote the gauge's range down
        res = self.resolver.get("reservoir", site)
        top = res.crest_m if res.crest_m is not None else res.check_flood_m
        if top is None:
            return b
        cap = top + ABOVE_CREST_M
        if b is None:
            return Bounds(max=cap)
        return b.model_copy(update={"max": cap if b.max is None else min(b.max, cap)})

    def _interval(self, sensor: str) -> float | None:
        got = self.intervals.get(sensor)
        if got is None and "." in sensor:
            got = self.intervals.get(sensor.split(".", 1)[0])
        return got

    def judge(self, r: Reading) -> str | None:
        """Why ``r`` must not reach the hazard packs (in words, for the maintainer), or None."""
        if r.quality is not Quality.OK:
            return f"{r.sensor} ({r.quantity}) {_QUALITY.get(r.quality, r.quality.value)}, 边缘网关已标记"
        key = (r.site, r.quantity, r.sensor)
        got = self._judged.get(key)
        if got is None:  # what a sensor is held to, resolved once (not three lookups per reading)
            if len(self._judged) >= 100_000:  # one per sensor: only made-up names get here
                self._judged.clear()
            b = self.bounds(r.site, r.quantity)
            got = self._judged[key] = (b, self._interval(r.sensor) if b is not None else None)
        b, interval = got
        why = None if b is None else out_of_bounds(r.value, b, interval)
        return None if why is None else f"{r.sensor} ({r.quantity}) {why}"

    def exclude(self, r: Reading, why: str) -> None:
        """Remember that a hazard reading of ``r.site`` was kept from the packs (named in its warnings)."""
        ignored(self.name, "excluded")
        if self.limiter.allow(r.sensor):
            more = self.limiter.take_suppressed(r.sensor)
            log.warning("reading excluded from the hazard rules: %s%s", why,
                        f" ({more} more from this sensor since the last line)" if more else "",
                        extra={"kv": {"site": r.site, "sensor": r.sensor, "id": r.id}})
        st = self.states[r.site]
        t = r.ts.timestamp()
        if st.count == 0 or t - st.last_t > KEEP_S:
            st.since, st.count = t, 0
        st.count += 1
        st.last_t = max(st.last_t, t)
        st.last_why = why

    def notes(self, site: str, t: float) -> tuple[list[str], int]:
        """Evidence lines and count of the site's readings excluded in this run (none for a day: none)."""
        st = self.states.items.get(site)
        if st is None or st.count == 0 or t - st.last_t > KEEP_S:
            return [], 0
        return [f"已剔除 {st.count} 条不可信数据, 未计入本预警判断 (最近一条: {st.last_why})"], st.count

    # --- the pack interface (nothing is routed here: see the module doc) --------------------------
    def feed(self, reading: Reading, ctx: Context) -> list[Assessment]:
        return []

    def tick(self, now: datetime, ctx: Context) -> list[Assessment]:
        return []

    def problems(self, config: Any) -> Iterable[str]:
        return ()

    def dump(self) -> dict[str, Any]:
        return self.states.dump_dirty()

    def load(self, entity: str, data: dict[str, Any]) -> None:
        self.states.load(entity, data)
