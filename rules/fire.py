"""Forest fire (森林火灾): camera detections confirmed, graded by the day's fire-danger rating.

Cameras with on-board detection report smoke/flame confidence (0..1). False alarms are common
(cloud, dust, chimneys, sunlight), so a lone detection is only a blue 疑似火情; a fire is confirmed
by ``confirm_n`` detections from one camera within ``confirm_window_s`` or by two cameras within
it, and then graded by the day's danger rating (森林火险等级 1..5, ``fire_danger`` readings).
The rating also makes a warning of its own (森林火险预警, key ``fire:<site>:danger``).
When detections stop, the alarm fades on the clock (:meth:`FirePack.tick`), then lifts after the hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from rules.config import FireThresholds, Resolver
from rules.pack import Assessment, Context, register
from rules.state import States
from yujing.model import Hazard, Level, Q, Reading

_DANGER = {1: "低", 2: "较低", 3: "较高", 4: "高", 5: "极高"}


@dataclass
class SiteState:
    detections: list[list[Any]] = field(default_factory=list)  # [t, camera, confidence, kind]
    danger: int | None = None
    danger_t: float = 0.0
    last_t: float = 0.0
    drill: bool = False


@register
class FirePack:
    name: ClassVar[str] = "fire"
    quantities: ClassVar[frozenset[str]] = frozenset({Q.SMOKE.value, Q.FLAME.value, Q.FIRE_DANGER.value})

    def __init__(self, config: Any) -> None:
        self.config = config
        self.sites_cfg = {s.id: s for s in config.sites}
        self.resolver = Resolver(config.rules, self.sites_cfg)
        self.sites: States[SiteState] = States(SiteState)

    def thr(self, site: str) -> FireThresholds:
        return self.resolver.get("fire", site)

    def problems(self, config: Any) -> Iterable[str]:
        return ()

    def feed(self, r: Reading, ctx: Context) -> list[Assessment]:
        thr = self.thr(r.site)
        st = self.sites[r.site]
        t = r.ts.timestamp()
        st.drill = r.drill
        if r.quantity == Q.FIRE_DANGER:
            rating = int(round(r.value))
            if not 1 <= rating <= 5:
                return []  # out of range: the equipment pack says so
            if t >= st.danger_t:
                st.danger, st.danger_t = rating, t
            return [self._danger(r.site, st, thr, t), *self._fire(r.site, st, thr, max(t, st.last_t), ctx)]
        camera = r.meta.get("camera") or r.sensor
        if r.value >= thr.min_confidence:
            entry = [t, camera, r.value, r.quantity]
            if entry not in st.detections:
                st.detections.append(entry)
                st.detections.sort(key=lambda d: d[0])
        st.last_t = max(st.last_t, t)
        return self._fire(r.site, st, thr, st.last_t, ctx)

    def tick(self, now: datetime, ctx: Context) -> list[Assessment]:
        out = []
        t = now.timestamp()
        for site, st in self.sites.items.items():
            thr = self.thr(site)
            if st.danger is not None and t - st.danger_t > thr.danger_valid_s:
                st.danger = None  # expired: the danger warning lifts (below), fires get default_danger
                self.sites.touch(site)
            if st.danger is None and ctx.active(f"{Hazard.FIRE}:{site}:danger") is not None:
                out.append(self._danger(site, st, thr, t, expired=True))
            if st.detections or ctx.active(f"{Hazard.FIRE}:{site}") is not None:
                out += self._fire(site, st, thr, max(t, st.last_t), ctx, touch=True)
        return out

    def _fire(self, site: str, st: SiteState, thr: FireThresholds, t: float, ctx: Context,
              touch: bool = False) -> list[Assessment]:
        key = f"{Hazard.FIRE}:{site}"
        recent = [d for d in st.detections if t - thr.confirm_window_s <= d[0] <= t]
        if len(recent) != len(st.detections):
            st.detections = [d for d in st.detections if d[0] >= t - thr.confirm_window_s]
            if touch:
                self.sites.touch(site)
        if not recent and ctx.active(key) is None:
            return [Assessment(key=key, hazard=Hazard.FIRE, site=site, level=None, mechanics=thr.mechanics, t=t)]
        cams: dict[str, int] = {}
        for d in recent:
            cams[d[1]] = cams.get(d[1], 0) + 1
        window = f"{thr.confirm_window_s / 60:.0f} 分钟内"
        danger = st.danger or thr.default_danger
        evidence = []
        level: Level | None = None
        best_cam = max(cams, key=lambda c: cams[c]) if cams else ""
        by_persistence = bool(cams) and cams[best_cam] >= thr.confirm_n
        by_two = thr.two_cameras and len(cams) >= 2
        if by_persistence or by_two:
            level = thr.confirmed_level.get(danger, Level.YELLOW)
            evidence.append(f"摄像机 {best_cam} {window}检测到烟火 {cams[best_cam]} 次 ≥ 确认次数 {thr.confirm_n}"
                            if by_persistence else
                            f"{window}两台摄像机 ({', '.join(sorted(cams))}) 均检测到烟火")
            evidence.append(f"今日森林火险等级 {danger} 级 ({_DANGER[danger]}): 确认火情定为{level.chinese}")
        elif cams:
            level = thr.unconfirmed_level
            evidence.append(f"摄像机 {best_cam} {window}检测到烟火 {cams[best_cam]} 次, 尚未确认 (疑似火情)")
        else:
            evidence.append(f"{window}无烟火检测")
        if recent:
            top = max(recent, key=lambda d: d[2])
            evidence.append(f"最高置信度 {top[2]:.2f} ({'明火' if top[3] == Q.FLAME else '烟雾'}, 摄像机 {top[1]})")
        values = {"detections": float(len(recent)), "cameras": float(len(cams)), "fire_danger": float(danger)}
        name = self.sites_cfg[site].name if site in self.sites_cfg else site
        title = f"{name}森林火灾{level.chinese}预警" if level else ""
        return [Assessment(key=key, hazard=Hazard.FIRE, site=site, level=level, mechanics=thr.mechanics,
                           rule="fire-detection", title=title, evidence=evidence, values=values, t=t,
                           drill=st.drill)]

    def _danger(self, site: str, st: SiteState, thr: FireThresholds, t: float, expired: bool = False) -> Assessment:
        rating = st.danger or thr.default_danger
        level = None if expired else thr.danger_level.get(rating)
        name = self.sites_cfg[site].name if site in self.sites_cfg else site
        evidence = ([f"{(t - st.danger_t) / 3600:.0f} 小时未收到新的森林火险等级预报, 原等级已过期"] if expired else
                    [f"森林火险等级 {rating} 级 ({_DANGER[rating]})"])
        return Assessment(key=f"{Hazard.FIRE}:{site}:danger", hazard=Hazard.FIRE, site=site, level=level,
                          mechanics=thr.mechanics, rule="fire-danger",
                          title=f"{name}森林火险{level.chinese}预警" if level else "",
                          evidence=evidence, values={} if expired else {"fire_danger": float(rating)}, t=t,
                          drill=st.drill)

    def dump(self) -> dict[str, Any]:
        return self.sites.dump_dirty()

    def load(self, entity: str, data: dict[str, Any]) -> None:
        self.sites.load(entity, data)
