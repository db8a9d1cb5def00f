"""A scenario turned into value sources for every simulated device, and its faults into a timeline.

Pure apart from :func:`play_faults`: sources are functions of scenario time, so the same
scenario gives the same readings at any clock speed.
"""

from __future__ import annotations

import bisect
import logging
import math
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Sequence

from simulators.devices import simulator_of
from simulators.devices.faults import source_key
from simulators.devices.values import Constant, PiecewiseLinear, TippingCounter, ValueSource
from simulators.scenario import GATEWAY_FAULTS, FaultEvent, Landslide, Scenario, Storm

log = logging.getLogger("yujing.sim.playback")
KM_PER_DEG = 111.2


def _interp(ts: Sequence[float], vs: Sequence[float], t: float) -> float:
    i = bisect.bisect_right(ts, t)
    if i == 0:
        return vs[0]
    if i == len(ts):
        return vs[-1]
    t1, t2 = ts[i - 1], ts[i]
    return vs[i - 1] + (vs[i] - vs[i - 1]) * (t - t1) / (t2 - t1)


class StormRain:
    """Rain rate (mm/h) at one place under a moving storm cell: peak(t) × e^-(d/r)²."""

    def __init__(self, storm: Storm, lat: float, lon: float, t0: datetime) -> None:
        self.storm, self.lat, self.lon, self.t0 = storm, lat, lon, t0
        pts = sorted(storm.track)
        self.tt = [p[0] for p in pts]
        self.lats = [p[1] for p in pts]
        self.lons = [p[2] for p in pts]
        rate = sorted(storm.rate_mm_h)
        self.rt = [p[0] for p in rate]
        self.rv = [p[1] for p in rate]

    def distance_km(self, t: float) -> float:
        clat, clon = _interp(self.tt, self.lats, t), _interp(self.tt, self.lons, t)
        dy = (self.lat - clat) * KM_PER_DEG
        dx = (self.lon - clon) * KM_PER_DEG * math.cos(math.radians(clat))
        return math.hypot(dx, dy)

    def value(self, now: datetime) -> float:
        t = (now - self.t0).total_seconds()
        peak = _interp(self.rt, self.rv, t)
        return max(0.0, peak) * math.exp(-((self.distance_km(t) / self.storm.radius_km) ** 2))


class Sum:
    def __init__(self, parts: list[ValueSource]) -> None:
        self.parts = parts

    def value(self, now: datetime) -> float:
        return sum(p.value(now) for p in self.parts)


class RainSincePrevious:
    """Rain (mm) fallen since the previous ask: what an SL651 RTU reports as element 20."""

    def __init__(self, rate_mm_h: ValueSource) -> None:
        self.rate = rate_mm_h
        self._last: datetime | None = None

    def value(self, now: datetime) -> float:
        mm = 0.0
        if self._last is not None and now > self._last:
            mm = max(0.0, self.rate.value(now)) * (now - self._last).total_seconds() / 3600.0
        self._last = now if self._last is None or now > self._last else self._last
        return round(mm, 1)


class LandslideCurve:
    """Cumulative displacement (mm): creep, then Fukuzono's linearly falling inverse velocity."""

    def __init__(self, spec: Landslide, t0: datetime) -> None:
        self.spec, self.t0 = spec, t0
        self.v0 = spec.creep_mm_d / 86400.0  # mm/s

    def at(self, t: float) -> float:
        s = self.spec
        ta, tf = s.accelerate_at, s.failure_at
        if ta is None or tf is None or t <= ta:
            return min(s.stop_at_mm, s.start_mm + self.v0 * t)
        # 1/v falls linearly from 1/v0 at ta to 0 at tf: v = v0 (tf-ta)/(tf-t); S = ∫v
        t = min(t, tf - 1.0)
        accel = self.v0 * (tf - ta) * math.log((tf - ta) / (tf - t))
        return min(s.stop_at_mm, s.start_mm + self.v0 * ta + accel)

    def value(self, now: datetime) -> float:
        return round(self.at((now - self.t0).total_seconds()), 3)


class Calm:
    """A quiet reading with a small daily swing (inflow against outflow): real gauges never read flat."""

    def __init__(self, base: float, swing: float, phase_s: float, t0: datetime) -> None:
        self.base, self.swing, self.phase_s, self.t0 = base, swing, phase_s, t0

    def value(self, now: datetime) -> float:
        t = (now - self.t0).total_seconds() + self.phase_s
        return round(self.base + self.swing * math.sin(2 * math.pi * t / 86400.0), 3)


def calm_creep(site: Any) -> float:
    """A hazard point between events creeps at a fifth of its reference rate: far below any warning."""
    ref = getattr(getattr(getattr(site, "thresholds", None), "landslide", None), "reference_mm_per_day", None)
    return 0.2 * ref if ref else 0.1


def calm_level(site: Any, reg: Any) -> float:
    """A reservoir's level when nothing is scripted: below its flood-limit level."""
    res = getattr(getattr(site, "thresholds", None), "reservoir", None)
    for name in ("flood_limit_m", "flood_limit"):
        v = getattr(res, name, None)
        if v is not None:
            return round(float(v) - 1.5, 2)
    lo, hi = getattr(reg, "min", None), getattr(reg, "max", None)
    if lo is not None and hi is not None:
        return round((lo + hi) / 2, 2)
    return 0.0


@dataclass
class Plan:
    """Per device id: value sources by key (``quantity`` or ``quantity.sensor``)."""

    sources: dict[str, dict[str, ValueSource]]
    rain: dict[str, ValueSource]  # site id → rain rate (mm/h), for the report


def build_plan(cfg: Any, scn: Scenario | None, t0: datetime, devices: list[Any] | None = None) -> Plan:
    scn = scn or Scenario(name="calm", duration=86400)
    sites = {s.id: s for s in cfg.sites}
    rates: dict[str, ValueSource] = {}
    for sid, site in sites.items():
        parts: list[ValueSource] = []
        if site.lat is not None and site.lon is not None:
            parts += [StormRain(st, site.lat, site.lon, t0) for st in scn.storms]
        parts += [PiecewiseLinear(r.rate_mm_h, t0) for r in scn.rain if sid in r.sites]
        if parts:
            rates[sid] = parts[0] if len(parts) == 1 else Sum(parts)
    levels = {lv.site: lv for lv in scn.levels}
    slides = {ls.site: ls for ls in scn.landslides}
    cams = {c: f for f in scn.fire for c in f.cameras}
    out: dict[str, dict[str, ValueSource]] = {}
    for dev in devices if devices is not None else [d for g in cfg.gateways for d in g.devices]:
        site = sites.get(dev.site)
        srcs: dict[str, ValueSource] = {}
        for v in dev.values():
            key = source_key(v.quantity, getattr(v, "sensor", ""))
            q = v.quantity
            if q == "rain_count_mm":
                scale = getattr(v, "scale", 0.5) or 0.5
                srcs[key] = TippingCounter(rates.get(dev.site, Constant(0.0)), mm_per_tip=scale,
                                           rollover=65536 if getattr(v, "type", "") in ("uint16", "int16") else 2**32)
            elif q == "rain_mm":
                srcs[key] = RainSincePrevious(rates.get(dev.site, Constant(0.0)))
            elif q == "level_m":
                lv = levels.get(dev.site)
                phase = zlib.crc32(dev.id.encode()) % 86400
                srcs[key] = PiecewiseLinear(lv.level_m, t0) if lv else Calm(calm_level(site, v), 0.03, phase, t0)
            elif q == "displacement_mm":
                spec = slides.get(dev.site) or Landslide(site=dev.site, creep_mm_d=calm_creep(site))
                srcs[key] = LandslideCurve(spec, t0)
            elif q in ("smoke_confidence", "flame_confidence"):
                f = cams.get(dev.id)
                series = (f.smoke if q == "smoke_confidence" else f.flame) if f else None
                srcs[key] = PiecewiseLinear(series, t0) if series else Constant(0.0)
            else:
                srcs[key] = Constant(0.0)
        extra = getattr(simulator_of(dev.type), "scenario_sources", None)  # what only this kind needs
        if extra is not None:
            srcs.update(extra(dev, scn, t0))
        out[dev.id] = srcs
    return Plan(sources=out, rain=rates)


Action = Callable[[FaultEvent, bool], Awaitable[None]]  # (event, starting) -> None


async def play_faults(events: list[FaultEvent], sleep_until: Callable[[float], Awaitable[bool]],
                      device_action: Action, gateway_action: Action | None = None) -> None:
    """Apply each fault at its offset and heal it at ``until``; ``sleep_until(offset)`` returns True on stop."""
    steps: list[tuple[float, int, FaultEvent, bool]] = []
    for i, ev in enumerate(events):
        steps.append((ev.at, i, ev, True))
        if ev.until is not None:
            steps.append((ev.until, i, ev, False))
    for offset, _i, ev, starting in sorted(steps, key=lambda s: (s[0], s[1])):
        if await sleep_until(offset):
            return
        gateway = ev.fault in GATEWAY_FAULTS
        action = gateway_action if gateway else device_action
        if action is None:
            log.warning("gateway faults need a drill (yujing drill); ignored here",
                        extra={"kv": {"gateway": ev.gateway, "fault": ev.fault.value}})
            continue
        log.info("scenario fault" if starting else "scenario fault healed",
                 extra={"kv": {"target": ev.gateway or ev.device, "fault": ev.fault.value, "offset_s": offset}})
        await action(ev, starting)
