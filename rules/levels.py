"""Reservoir (水库) and river (河道) water levels against their characteristic levels.

Reservoir, by default: above 汛限水位 → blue; 防洪高水位 → yellow; 设计洪水位, or rising faster than
``rise_rate_m_per_h`` while above the flood-limit level → orange; 校核洪水位 or within
``crest_margin_m`` of the crest → red. River: 警戒水位 → yellow, 保证水位 → red.
Levels come from each site's design documents (``thresholds.reservoir`` / ``thresholds.river``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from rules.config import ReservoirThresholds, Resolver, RiverThresholds
from rules.lifecycle import grade
from rules.pack import Assessment, Context, ignored, register
from rules.state import States
from yujing.model import Hazard, Level, Q, Reading

_RES_NAMES = {
    "flood_limit_m": (Level.BLUE, "汛限水位"),
    "flood_control_high_m": (Level.YELLOW, "防洪高水位"),
    "design_flood_m": (Level.ORANGE, "设计洪水位"),
    "check_flood_m": (Level.RED, "校核洪水位"),
}


@dataclass
class GaugeState:
    site: str = ""
    samples: list[list[float]] = field(default_factory=list)  # [t, level_m], ascending, over the rise window
    rising: bool = False  # the rate-of-rise criterion is in force (for its own hysteresis)


def rise_rate(samples: list[list[float]], window_s: float) -> tuple[float, float] | None:
    """(m/h, span s) from the oldest sample in the window to the newest; None before half a window."""
    if len(samples) < 2:
        return None
    t1, v1 = samples[-1]
    # samples ascend by time: a bisection, not a scan of the window per reading (the last sample is always in it)
    old = samples[bisect_left(samples, t1 - window_s, key=_t)]
    span = t1 - old[0]
    if span < window_s / 2:
        return None
    return (v1 - old[1]) / span * 3600.0, span


def _t(sample: list[float]) -> float:
    return sample[0]


@register
class LevelsPack:
    name: ClassVar[str] = "levels"
    quantities: ClassVar[frozenset[str]] = frozenset({Q.LEVEL_M.value})

    def __init__(self, config: Any) -> None:
        self.config = config
        self.gauges: States[GaugeState] = States(GaugeState)
        self.sites = {s.id: s for s in config.sites}
        self.resolver = Resolver(config.rules, self.sites)

    def reservoir(self, site: str) -> ReservoirThresholds:
        return self.resolver.get("reservoir", site)

    def river(self, site: str) -> RiverThresholds:
        return self.resolver.get("river", site)

    def problems(self, config: Any) -> Iterable[str]:
        for s in config.sites:
            if s.kind == "reservoir" and self.reservoir(s.id).flood_limit_m is None:
                yield f"reservoir site {s.id}: no characteristic levels (thresholds.reservoir.flood_limit_m ...): no level warnings"
            if s.kind == "river" and self.river(s.id).warning_m is None and self.river(s.id).guarantee_m is None:
                yield f"river site {s.id}: no warning_m / guarantee_m in thresholds.river: no level warnings"

    def feed(self, r: Reading, ctx: Context) -> list[Assessment]:
        site = self.sites.get(r.site)
        if site is None or site.kind not in ("reservoir", "river"):
            ignored(self.name, "not-a-water-site")
            return []
        st = self.gauges[r.sensor]
        st.site = r.site
        t = getattr(ctx, "reading_t", None) or r.ts.timestamp()
        if st.samples and t <= st.samples[-1][0]:
            if any(s[0] == t for s in st.samples):
                ignored(self.name, "duplicate")
                return []
            st.samples.append([t, r.value])
            st.samples.sort()
            return []  # a late reading refines the rate but does not speak for now
        st.samples.append([t, r.value])
        if site.kind == "reservoir":
            thr = self.reservoir(r.site)
            # what fell out of 1.5 windows is at the front (samples ascend; the newest, at t, always stays):
            # dropped in place, not the whole list re-filtered on every reading
            del st.samples[:bisect_left(st.samples, t - thr.rise_window_s * 1.5, key=_t)]
            return [self._reservoir(r, st, thr, ctx, site.name)]
        st.samples = st.samples[-1:]
        return [self._river(r, self.river(r.site), ctx, site.name)]

    def tick(self, now: datetime, ctx: Context) -> list[Assessment]:
        return []  # judged on data only: a silent gauge is an equipment warning

    def _reservoir(self, r: Reading, st: GaugeState, thr: ReservoirThresholds, ctx: Context,
                   name: str) -> Assessment:
        key = f"{Hazard.RESERVOIR}:{r.site}"
        current = ctx.active(key)
        cuts: dict[Level, float] = {}
        labels: dict[Level, str] = {}
        for fld, (lv, label) in _RES_NAMES.items():
            v = getattr(thr, fld)
            if v is not None:
                cuts[lv], labels[lv] = v, f"{label} {v:.2f} m"
        if thr.crest_m is not None:
            near = thr.crest_m - thr.crest_margin_m
            if Level.RED not in cuts or near < cuts[Level.RED]:
                cuts[Level.RED], labels[Level.RED] = near, f"坝顶高程 {thr.crest_m:.2f} m 减安全超高 {thr.crest_margin_m:.2f} m"
        value = r.value
        level = grade(value, cuts, current, thr.hysteresis_m)
        evidence = []
        if level is not None:
            evidence.append(f"水位 {value:.2f} m ≥ {labels[level]} ({level.chinese})"
                            if value >= cuts[level] else
                            f"水位 {value:.2f} m 仍在{labels[level]}附近 (回落未超过 {thr.hysteresis_m:.2f} m)")
        values = {"level_m": value}
        rate = rise_rate(st.samples, thr.rise_window_s)
        if rate is not None:
            values["rise_m_per_h"] = round(rate[0], 4)
            limit = thr.rise_rate_m_per_h
            above_limit = thr.flood_limit_m is not None and value >= thr.flood_limit_m
            if limit is not None and above_limit:
                need = limit * (0.8 if st.rising else 1.0)
                st.rising = rate[0] >= need
                if st.rising:
                    evidence.append(f"近 {rate[1] / 60:.0f} 分钟水位上涨速率 {rate[0]:.2f} m/h ≥ {limit:.2f} m/h, "
                                    f"且高于汛限水位 (橙色)")
                    if level is None or level < Level.ORANGE:
                        level = Level.ORANGE
            else:
                st.rising = False
            evidence.append(f"近 {rate[1] / 60:.0f} 分钟水位变化 {rate[0]:+.2f} m/h")
        if level is None:
            if thr.flood_limit_m is not None:
                evidence.insert(0, f"水位 {value:.2f} m 低于汛限水位 {thr.flood_limit_m:.2f} m")
            else:
                evidence.insert(0, f"水位 {value:.2f} m (未配置特征水位)")
        evidence.append(f"水位计 {r.sensor}")
        title = f"{name}水位{level.chinese}预警" if level else ""
        return Assessment(key=key, hazard=Hazard.RESERVOIR, site=r.site, level=level, mechanics=thr.mechanics,
                          rule="reservoir-level", title=title, evidence=evidence, values=values,
                          t=r.ts.timestamp(), drill=r.drill)

    def _river(self, r: Reading, thr: RiverThresholds, ctx: Context, name: str) -> Assessment:
        key = f"{Hazard.RIVER}:{r.site}"
        cuts: dict[Level, float] = {}
        labels: dict[Level, str] = {}
        if thr.warning_m is not None:
            cuts[thr.warning_level], labels[thr.warning_level] = thr.warning_m, f"警戒水位 {thr.warning_m:.2f} m"
        if thr.guarantee_m is not None:
            cuts[thr.guarantee_level] = thr.guarantee_m
            labels[thr.guarantee_level] = f"保证水位 {thr.guarantee_m:.2f} m"
        level = grade(r.value, cuts, ctx.active(key), thr.hysteresis_m)
        if level is not None:
            evidence = [f"水位 {r.value:.2f} m ≥ {labels[level]} ({level.chinese})" if r.value >= cuts[level] else
                        f"水位 {r.value:.2f} m 仍在{labels[level]}附近 (回落未超过 {thr.hysteresis_m:.2f} m)"]
        else:
            evidence = [f"水位 {r.value:.2f} m 低于警戒水位" + (f" {thr.warning_m:.2f} m" if thr.warning_m else "")]
        evidence.append(f"水位计 {r.sensor}")
        return Assessment(key=key, hazard=Hazard.RIVER, site=r.site, level=level, mechanics=thr.mechanics,
                          rule="river-level", title=f"{name}河道水位{level.chinese}预警" if level else "",
                          evidence=evidence, values={"level_m": r.value}, t=r.ts.timestamp(), drill=r.drill)

    def dump(self) -> dict[str, Any]:
        return self.gauges.dump_dirty()

    def load(self, entity: str, data: dict[str, Any]) -> None:
        self.gauges.load(entity, data)
