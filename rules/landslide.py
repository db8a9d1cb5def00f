"""Landslide (滑坡) deformation: rate, acceleration, improved tangent angle, inverse velocity, rain.

Per displacement sensor (crack meter, GNSS, inclinometer; cumulative mm):

- the rate v (mm/day) is the least-squares slope over ``smoothing_s`` and at least ``min_points``
  readings, so one noisy sample does not make a landslide accelerate and a sparse sensor (a daily
  群测群防 reading, a GNSS fix every few hours) is graded over its last readings; a sensor whose last
  ``min_points`` readings span more than ``max_window_s`` cannot be graded, and its maintainer gets an
  ``equipment:<sensor>:sampling`` notice saying so. Acceleration is the change of v over one window;
- with a reference velocity v₀ (the site's uniform-velocity stage) the improved tangent angle
  α = arctan(v / v₀) grades the stage (Xu Qiang): ≈45° uniform → blue, then yellow, orange (80°),
  red (85°); without v₀ the site's ``rate_mm_per_day`` cut points grade it;
- a level counts only after ``persist_n`` consecutive readings reach it;
- the inverse-velocity method (Fukuzono 1985) fits 1/v against time over ``failure_window_s`` while
  the slope accelerates (each v stamped at its window's centre) and carries the extrapolated time of
  failure and its standard error in the evidence, not the level;
- a rainstorm or torrent warning at the site or at its ``rain_sites`` raises the watch: blue when
  the slope is quiet, one level up (at most orange) when it is already moving.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from rules.config import LandslideThresholds, Resolver
from rules.lifecycle import grade, max_level, step
from rules.pack import Assessment, Context, register
from rules.state import States
from yujing.model import Hazard, HazardWarning, Level, Q, Reading, WarningState

DAY = 86400.0
_LEVEL = {lv.value: lv for lv in Level}


def _level(v: str) -> Level:
    return _LEVEL.get(v) or Level(v)  # (by dict: per reading; anything else gets Level's own error)
MAX_CARRY = 4.0  # the velocity now is taken as at most this many times the window's mean


@dataclass
class SensorState:
    site: str = ""
    samples: list[list[float]] = field(default_factory=list)  # [t, mm] over the smoothing window
    rates: list[list[float]] = field(default_factory=list)  # [t, mm/day] over the failure window
    raw: list[int] = field(default_factory=list)  # last persist_n raw severities (0: none)
    level: str | None = None  # the persistent deformation level
    sparse_s: float = 0.0  # > 0: the last min_points readings span this long, beyond max_window_s (not graded)
    last: dict[str, float] = field(default_factory=dict)  # latest figures, for evidence
    # [the latest reading's time] when the slope was accelerating: the inverse-velocity fit over ``rates`` (as they
    # are until the next reading) is due in ``last``, made when a message needs it (see LandslidePack.figures).
    # A list, not an optional float: a null in saved state sends it through the slower encoder (store.dumps)
    fit_t: list[float] = field(default_factory=list)


def _time(point: list[float]) -> float:
    return point[0]


def slope(points: list[list[float]]) -> float:
    """Least-squares slope of y over t (units of y per second)."""
    n = len(points)
    # (lists, not generators: the same sums in the same order, a third faster on a day of 5-min samples)
    mt = sum([p[0] for p in points]) / n
    my = sum([p[1] for p in points]) / n
    var = sum([(p[0] - mt) ** 2 for p in points])
    if var == 0:
        return 0.0
    return sum([(p[0] - mt) * (p[1] - my) for p in points]) / var


@dataclass(frozen=True)
class Failure:
    """An inverse-velocity (Fukuzono) estimate of the time of failure."""

    in_h: float  # hours from now until 1/v reaches 0
    sigma_h: float  # its standard error (from the fit's residuals), hours
    n: int  # rates fitted
    r2: float


def time_to_failure(rates: list[list[float]], now: float) -> Failure | None:
    """Fukuzono: fit 1/v = a + b·t over positive rates, each stamped at the centre of its window.

    A smoothed rate is the mean velocity over its window, so it belongs at the window's centre; stamped at
    the window's end, every 1/v is read late and the fitted failure lands late (on an exactly linear 1/v,
    by about half the time left at red). The standard error of t_f = t̄ − ȳ/b follows from the residuals
    (delta method: ȳ and b are uncorrelated).
    """
    pts = [[t, 1.0 / v] for t, v in rates if v > 0]
    n = len(pts)
    if n < 3:
        return None
    b = slope(pts)
    if b >= 0:
        return None
    mt = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    a = my - b * mt
    sxx = sum((p[0] - mt) ** 2 for p in pts)
    ss_tot = sum((p[1] - my) ** 2 for p in pts)
    ss_res = sum((p[1] - (a + b * p[0])) ** 2 for p in pts)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    tf = -a / b
    s2 = ss_res / (n - 2) if n > 2 else 0.0
    sigma = math.sqrt(s2 / (n * b * b) + my * my * s2 / (b ** 4 * sxx)) if sxx > 0 else math.inf
    return Failure(max(0.0, (tf - now) / 3600.0), sigma / 3600.0, n, r2)


def window(samples: list[list[float]], t: float, thr: LandslideThresholds) -> list[list[float]]:
    """The samples a rate is fitted over: those within ``smoothing_s``, and at least the last ``min_points``."""
    since = t - thr.smoothing_s
    recent = [s for s in samples if s[0] >= since]
    return recent if len(recent) >= thr.min_points else samples[-thr.min_points:]


@register
class LandslidePack:
    name: ClassVar[str] = "landslide"
    quantities: ClassVar[frozenset[str]] = frozenset({Q.DISPLACEMENT_MM.value})

    def __init__(self, config: Any) -> None:
        self.config = config
        self.sensors: States[SensorState] = States(SensorState)
        self.sites = {s.id: s for s in config.sites}
        self.resolver = Resolver(config.rules, self.sites)
        self.by_site: dict[str, set[str]] = {}
        self._sorted: dict[str, list[str]] = {}  # site -> its sensors in order (by_site sorted once per change)
        self._rain_keys: dict[str, list[str]] = {}  # site -> the rain conditions that raise its watch
        # sensor -> its rates are in time order (they are, unless a late sample moved a window's centre back):
        # then the rate one window back and the expired ones are found by bisection instead of a scan per reading
        self._ordered: dict[str, bool] = {}
        # rain site -> landslide sites whose watch its rain warnings raise
        self.coupled: dict[str, set[str]] = {}
        for s in config.sites:
            if s.kind == "landslide":
                for rs in [s.id, *self.thr(s.id).rain_sites]:
                    self.coupled.setdefault(rs, set()).add(s.id)

    def thr(self, site: str) -> LandslideThresholds:
        return self.resolver.get("landslide", site)

    def _sensor_at(self, site: str, sensor: str) -> None:
        sensors = self.by_site.setdefault(site, set())
        if sensor not in sensors:
            sensors.add(sensor)
            self._sorted[site] = sorted(sensors)

    def problems(self, config: Any) -> Iterable[str]:
        for s in config.sites:
            if s.kind != "landslide":
                continue
            thr = self.thr(s.id)
            if thr.reference_mm_per_day is None and not thr.rate_mm_per_day:
                yield (f"landslide site {s.id}: neither reference_mm_per_day (tangent angle) nor "
                       "rate_mm_per_day cut points: deformation is not graded (rain coupling still works)")
            for rs in thr.rain_sites:
                if rs not in self.sites:
                    yield f"landslide site {s.id}: rain_sites names unknown site {rs!r}"
        for gw in config.gateways:
            for d in gw.devices:
                site = self.sites.get(d.site)
                if site is None or site.kind != "landslide":
                    continue
                thr = self.thr(d.site)
                if (thr.min_points - 1) * d.interval_s > thr.max_window_s:
                    yield (f"landslide site {d.site}: device {d.id} reports every {d.interval_s / 86400:.1f} days: "
                           f"{thr.min_points} readings span more than max_window_s "
                           f"({thr.max_window_s / 86400:.0f} days), so it cannot be graded at this sampling rate")

    # --- evaluation ----------------------------------------------------------------------------
    def feed(self, r: Reading, ctx: Context) -> list[Assessment]:
        thr = self.thr(r.site)
        st = self.sensors[r.sensor]
        st.site = r.site
        self._sensor_at(r.site, r.sensor)
        t = getattr(ctx, "reading_t", None) or r.ts.timestamp()
        if st.samples and t <= st.samples[-1][0]:
            if all(s[0] != t for s in st.samples):
                st.samples.append([t, r.value])
                st.samples.sort()
            return []  # duplicates add nothing; a late sample refines the next rate
        st.samples = window(st.samples + [[t, r.value]], t, thr)
        span = t - st.samples[0][0]
        out = []
        if len(st.samples) >= thr.min_points and span > thr.max_window_s:
            # too sparse to say anything about now: no grade, and the maintainer hears of it
            st.sparse_s = span
            st.last, st.fit_t = {"displacement_mm": r.value}, []
            return [*self.assess(r.site, t, ctx, r.drill), self._sampling(r, st, thr, t)]
        if st.sparse_s:
            st.sparse_s = 0.0
            out.append(self._sampling(r, st, thr, t))
        if len(st.samples) < thr.min_points or span < thr.min_span_s:
            st.last, st.fit_t = {"displacement_mm": r.value}, []
            return [*self.assess(r.site, t, ctx, r.drill), *out]
        v = slope(st.samples) * DAY
        # the least-squares rate is the mean velocity over the window: it belongs at the window's centre
        tc = sum([s[0] for s in st.samples]) / len(st.samples)
        ordered = self._ordered.get(r.sensor, False)
        if ordered:  # the first rate at or after tc - span, by bisection (a day of 5-min rates is 288)
            k = bisect_left(st.rates, tc - span, key=_time)
            prev = st.rates[k] if k < len(st.rates) else None
        else:
            prev = next((p for p in st.rates if p[0] >= tc - span), None)  # the rate one window back
        accel = (v - prev[1]) / ((tc - prev[0]) / DAY) if prev is not None and tc > prev[0] else 0.0
        if ordered and st.rates and tc < st.rates[-1][0]:
            ordered = False  # a late sample moved a window's centre back: scan until the list is in order again
        st.rates.append([tc, v])
        # kept for the fit, and at least two windows back (a sparse sensor's window is long) for the acceleration
        cut = t - max(thr.failure_window_s, 2 * span)
        if ordered:
            del st.rates[:bisect_left(st.rates, cut, key=_time)]
        else:
            st.rates = [p for p in st.rates if p[0] >= cut]
            ordered = all(a[0] <= b[0] for a, b in zip(st.rates, st.rates[1:]))
        self._ordered[r.sensor] = ordered
        st.last = {"displacement_mm": r.value, "rate_mm_per_day": round(v, 4),
                   "accel_mm_per_day2": round(accel, 4), "rate_window_h": round(span / 3600.0, 2),
                   "rate_points": float(len(st.samples))}
        current = None if st.level is None else _level(st.level)
        raw = self._grade(v, thr, current)
        if raw is not None and raw >= Level.YELLOW and accel > 0 and prev is not None and v > prev[1] > 0:
            # an accelerating slope is graded on its velocity now, not at the window's centre: the mean lags it
            # by half a window (3 h of the default 6), which with persistence cost half the red lead time. It is
            # carried forward as accelerating creep moves, linearly in 1/v (Fukuzono), from the rate one window
            # back; only once the mean itself says "accelerating" (yellow), so a quiet slope's noise never does
            inv = 1.0 / v + (1.0 / v - 1.0 / prev[1]) / (tc - prev[0]) * (t - tc)
            v_now = 1.0 / inv if inv > 1.0 / (v * MAX_CARRY) else v * MAX_CARRY
            st.last["rate_now_mm_per_day"] = round(v_now, 4)
            raw = max(raw, self._grade(v_now, thr, current) or raw)
        if thr.reference_mm_per_day is not None:  # the angle graded: of the velocity now when carried forward
            graded_v = st.last.get("rate_now_mm_per_day", v)
            st.last["tangent_angle_deg"] = round(math.degrees(math.atan2(graded_v, thr.reference_mm_per_day)), 2)
            st.last["tangent_angle_mean_deg"] = round(math.degrees(math.atan2(v, thr.reference_mm_per_day)), 2)
        st.raw = (st.raw + [raw.severity if raw else 0])[-thr.persist_n:]
        if len(st.raw) >= thr.persist_n:
            sev = min(st.raw)
            st.level = next((lv.value for lv in Level if lv.severity == sev), None)
        accelerating = accel > 0 and raw is not None and raw >= Level.YELLOW
        # the fit (a pass over a day of rates) only says something in a message's evidence and values: it is made
        # when one needs it, from these same rates (see figures); on every accelerating reading it had been a
        # tenth of the rules service's CPU
        st.fit_t = [t] if accelerating else []
        return [*self.assess(r.site, t, ctx, r.drill), *out]

    @staticmethod
    def figures(st: SensorState) -> dict[str, float]:
        """The sensor's latest figures (``last``), with the inverse-velocity fit if it is due."""
        if st.fit_t:
            ttf = time_to_failure(st.rates, st.fit_t[0])
            st.fit_t = []  # made once: ``last`` now holds it, as it is saved
            if ttf is not None:
                st.last["failure_in_h"], st.last["failure_sigma_h"] = round(ttf.in_h, 1), round(ttf.sigma_h, 1)
                st.last["failure_fit_n"], st.last["failure_fit_r2"] = ttf.n, round(ttf.r2, 3)
        return st.last

    @staticmethod
    def _grade(v: float, thr: LandslideThresholds, current: Level | None) -> Level | None:
        if thr.reference_mm_per_day is not None:
            alpha = math.degrees(math.atan2(v, thr.reference_mm_per_day))
            return grade(alpha, thr.angle_deg, current, thr.hysteresis_deg)
        if thr.rate_mm_per_day:
            return grade(v, thr.rate_mm_per_day, current, thr.hysteresis_frac, relative=True)
        return None

    def _sampling(self, r: Reading, st: SensorState, thr: LandslideThresholds, t: float) -> Assessment:
        """The maintainer's notice that this sensor reads too sparsely to be graded (or no longer does)."""
        eq = self.resolver.get("equipment", r.site)
        name = self.sites[r.site].name if r.site in self.sites else r.site
        key = f"{Hazard.EQUIPMENT}:{r.sensor}:sampling"
        if st.sparse_s:
            evidence = [f"监测点 {r.sensor} 最近 {thr.min_points} 次读数跨 {st.sparse_s / 86400:.1f} 天, 超过 "
                        f"{thr.max_window_s / 86400:.0f} 天: 按此采样频率无法判断滑坡变形速率, 该点滑坡预警暂不能分级",
                        f"请加密监测 (至少每 {thr.max_window_s / (thr.min_points - 1) / 86400:.1f} 天一次) 或改用自动监测"]
            return Assessment(key=key, hazard=Hazard.EQUIPMENT, site=r.site, level=eq.fault_level,
                              mechanics=eq.mechanics, rule="landslide-sampling",
                              title=f"{name}监测点 {r.sensor} 采样过稀, 无法分级预警", evidence=evidence,
                              values={"span_s": round(st.sparse_s, 1)}, t=t, drill=r.drill)
        return Assessment(key=key, hazard=Hazard.EQUIPMENT, site=r.site, level=None, mechanics=eq.mechanics,
                          rule="landslide-sampling", evidence=[f"监测点 {r.sensor} 采样频率已足以分级"], t=t,
                          drill=r.drill)

    def tick(self, now: datetime, ctx: Context) -> list[Assessment]:
        return []  # judged on data only: a silent sensor is an equipment warning

    def on_warning(self, w: HazardWarning, ctx: Context) -> list[Assessment]:
        """A rain warning changed: re-judge the landslide sites it is coupled to."""
        if w.hazard not in (Hazard.RAINSTORM, Hazard.TORRENT):
            return []
        return [a for site in sorted(self.coupled.get(w.site, ()))
                for a in self.assess(site, w.updated_at.timestamp(), ctx, w.drill)]

    def assess(self, site: str, t: float, ctx: Context, drill: bool) -> list[Assessment]:
        """The site's condition: none when it calls for nothing and has no lifecycle (the engine would drop it);
        evidence and values are made when the engine makes a message of it (in the same feed)."""
        thr = self.thr(site)
        worst: tuple[Level | None, str, SensorState] | None = None
        for sensor in self._sorted.get(site, ()):
            st = self.sensors.items[sensor]
            lv = None if st.level is None else _level(st.level)
            if worst is None or (lv is not None and (worst[0] is None or lv > worst[0])):
                worst = (lv, sensor, st)
        deform = worst[0] if worst else None
        rain_keys = self._rain_keys.get(site)
        if rain_keys is None:
            rain_keys = self._rain_keys[site] = [f"{h}:{rs}" for rs in [site, *thr.rain_sites]
                                                 for h in (Hazard.RAINSTORM, Hazard.TORRENT)]
        rain = max_level(*[ctx.active(k) for k in rain_keys])
        level = deform
        raised = rain is not None and rain >= thr.rain_level
        if raised:
            level = Level.BLUE if deform is None else max(deform, step(deform, 1, cap=Level.ORANGE))
        key = f"{Hazard.LANDSLIDE}:{site}"
        if level is None and not ctx.tracks(key):
            return []

        def explain() -> tuple[str, list[str]]:
            evidence: list[str] = []
            if worst is not None:
                evidence += self._describe(worst[2], thr, deform)
                evidence.append(f"监测点 {worst[1]}")
            if raised:
                evidence.append(f"关联雨量站正处于暴雨/山洪{rain.chinese}预警: 滑坡预警级别提升为{level.chinese}")
            elif deform is None:
                evidence.append("关联雨量站无暴雨/山洪预警" if rain is None else
                                f"关联雨量站暴雨/山洪预警为{rain.chinese}, 低于联动级别{thr.rain_level.chinese}")
            name = self.sites[site].name if site in self.sites else site
            return f"{name}{'' if name.endswith('滑坡') else '滑坡'}{level.chinese}预警" if level else "", evidence

        def values() -> dict[str, float]:
            out: dict[str, float] = dict(self.figures(worst[2])) if worst is not None else {}
            if raised:
                out["rain_level"] = float(rain.severity)  # type: ignore[union-attr]
            return out
        return [Assessment(key=key, hazard=Hazard.LANDSLIDE, site=site, level=level, mechanics=thr.mechanics,
                           rule="landslide-deformation", t=t, drill=drill, explain=explain, measure=values)]

    @staticmethod
    def _describe(st: SensorState, thr: LandslideThresholds, level: Level | None) -> list[str]:
        last = LandslidePack.figures(st)
        out = []
        if "rate_mm_per_day" not in last:
            if st.sparse_s:
                return [f"累计位移 {last.get('displacement_mm', float('nan')):.1f} mm, 读数过稀 (最近 "
                        f"{thr.min_points} 次跨 {st.sparse_s / 86400:.1f} 天), 无法按此采样频率分级"]
            return [f"累计位移 {last.get('displacement_mm', float('nan')):.1f} mm, 数据不足以计算速率"]
        out.append(f"累计位移 {last['displacement_mm']:.1f} mm, 近 {last['rate_window_h']:.0f} 小时 "
                   f"({last['rate_points']:.0f} 次读数) 平均速率 "
                   f"{last['rate_mm_per_day']:.2f} mm/d, 加速度 {last['accel_mm_per_day2']:+.2f} mm/d²")
        if "rate_now_mm_per_day" in last:
            out.append(f"加速中: 按反速度线性外推, 此刻速率约 {last['rate_now_mm_per_day']:.2f} mm/d" +
                       (f" (窗口平均切线角 {last['tangent_angle_mean_deg']:.1f}°)" if "tangent_angle_mean_deg" in last
                        else ""))
        if "tangent_angle_deg" in last:
            cut = thr.angle_deg.get(level) if level else None
            out.append(f"改进切线角 {last['tangent_angle_deg']:.1f}°" +
                       (f" ≥ {level.chinese}阈值 {cut:.0f}°" if cut is not None else
                        f" (参考速率 {thr.reference_mm_per_day:.2f} mm/d)") +
                       (f", 已连续 {thr.persist_n} 次" if level else ""))
        elif level is not None and level in thr.rate_mm_per_day:
            out.append(f"位移速率 ≥ {level.chinese}阈值 {thr.rate_mm_per_day[level]:.2f} mm/d, 已连续 {thr.persist_n} 次")
        if "failure_in_h" in last:
            out.append(f"按反速度法(Fukuzono)估计约 {last['failure_in_h']:.0f} 小时后可能失稳 "
                       f"(±{last['failure_sigma_h']:.1f} 小时, 拟合 {last['failure_fit_n']:.0f} 点, "
                       f"R²={last['failure_fit_r2']:.2f}), 仅供参考")
        return out

    def dump(self) -> dict[str, Any]:
        return self.sensors.dump_dirty()

    def load(self, entity: str, data: dict[str, Any]) -> None:
        self.sensors.load(entity, data)
        self._sensor_at(self.sensors.items[entity].site, entity)


__all__ = ["LandslidePack", "WarningState"]
