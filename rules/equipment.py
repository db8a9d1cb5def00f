"""Equipment (监测设备) warnings, for maintainers: silence, stuck values, out-of-range values.

A silent sensor is never "all clear": the hazard packs judge only data they have, and this pack
says loudly that data is missing. It watches:

- every configured device (``gateways[*].devices[*]``): silent for ``silence_factor`` × its
  ``interval_s`` (at least ``min_silence_s``) → key ``equipment:<device>``;
- every gateway: its heartbeat (``status`` topic) or readings silent for ``silence_factor`` ×
  ``heartbeat_s``, or its last will saying offline → key ``equipment:gateway:<gateway>``; while a
  gateway is down its devices' silences are not raised separately (inhibited, as in Alertmanager);
- every sensor's readings: quality flags from the edge (stuck, out-of-range, comm-error), values
  outside ``rules.plausible`` (both judged once, by :mod:`rules.plausible`), and values unchanged
  for ``stuck_after_s`` → key ``equipment:<sensor>:fault``;
- readings a component had to drop because a bound was reached (a gateway's outbox, a collector's
  spool, a full disk), reported as a cumulative count → key ``equipment:loss:<component>``, raised
  when the count rises above the last one known (kept in the state, so a restart does not raise it
  again) and lifted after ``loss_quiet_s`` without a further loss. A count that falls was reset (the
  component restarted): what it says then is new.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from rules.config import EquipmentThresholds, Resolver
from rules.pack import Assessment, Context, register
from rules.state import States
from yujing.model import Hazard, Quality, Reading
from yujing.wire import LossReason

_QUALITY = {Quality.STUCK: "数值卡死", Quality.OUT_OF_RANGE: "数值超出量程", Quality.COMM_ERROR: "通信故障"}
_LOSS = {LossReason.SPOOL_FULL: "缓存队列已满", LossReason.DISK_FULL: "磁盘已满",
         LossReason.OUTBOX: "边缘网关发送缓存已满或磁盘已满"}


@dataclass
class DeviceState:
    last_t: float | None = None  # latest arrival of a reading (device) or heartbeat/reading (gateway)
    online: bool = True  # gateways: what their status says
    heard: bool = False  # gateways: a heartbeat has been seen (only then is their silence judged)
    drill: bool = False


@dataclass
class SensorState:
    value: float | None = None
    since: float = 0.0  # the value has been unchanged since
    last_t: float = 0.0


@dataclass
class LossState:
    dropped: int = 0  # the component's cumulative count, as last reported
    lost: int = 0  # dropped since the warning was raised
    since: float = 0.0  # the count last rose
    reason: str = ""


@dataclass
class Device:
    id: str
    gateway: str
    site: str
    interval_s: float
    event_driven: bool = False  # reports only when it sees something (an MQTT camera): its silence is no fault


_UNKNOWN = -1.0  # (not a duration: the cache of EquipmentPack._fault has no entry)


def _minutes(s: float) -> str:
    return f"{s / 60:.0f} 分钟" if s < 7200 else f"{s / 3600:.1f} 小时"


@register
class EquipmentPack:
    name: ClassVar[str] = "equipment"
    quantities: ClassVar[frozenset[str]] = frozenset({"*"})

    def __init__(self, config: Any) -> None:
        self.config = config
        self.sites = {s.id: s for s in config.sites}
        self.resolver = Resolver(config.rules, self.sites)
        self.devices: dict[str, Device] = {}
        self.gateways: dict[str, tuple[float, str]] = {}  # id -> (heartbeat_s, a site for the area)
        for gw in config.gateways:
            for d in gw.devices:
                self.devices[d.id] = Device(d.id, gw.id, d.site, d.interval_s, event_driven=d.silence_is_normal)
            self.gateways[gw.id] = (gw.heartbeat_s, gw.devices[0].site if gw.devices else gw.id)
        self.state: States[DeviceState] = States(DeviceState)  # device ids and "gateway:<id>"
        self.sensors: States[SensorState] = States(SensorState)
        self.losses: States[LossState] = States(LossState)  # by component
        self.started: float | None = None  # silence is measured from here for never-heard devices
        self.watched: set[str] | None = None  # None: every configured device
        self._keys: dict[str, tuple[Device | None, str, str | None, str]] = {}  # see _keys_of
        self._stuck: dict[tuple[str, str], float | None] = {}  # (site, quantity) -> stuck_after_s, see _fault

    def watch_only(self, sensors: Iterable[str]) -> None:
        """Judge the silence of these sensors' devices only (a backtest replays a slice of the data)."""
        self.watched = {d.id for d in map(self.device_of, sensors) if d is not None}

    def thr(self, site: str) -> EquipmentThresholds:
        return self.resolver.get("equipment", site)

    def problems(self, config: Any) -> Iterable[str]:
        return ()

    def device_of(self, sensor: str) -> Device | None:
        d = self.devices.get(sensor)
        if d is None and "." in sensor:
            d = self.devices.get(sensor.split(".", 1)[0])
        return d

    # --- readings ------------------------------------------------------------------------------
    def feed(self, r: Reading, ctx: Context) -> list[Assessment]:
        t = getattr(ctx, "reading_t", None) or r.ts.timestamp()
        # silence is judged on the clock tick() runs on: count from arrival, not from the gateway's clock
        arrived = getattr(ctx, "arrived", None)
        heard = t if arrived is None else arrived
        out = []
        dev, silence_key, gateway_key, fault_key = self._keys.get(r.sensor) or self._keys_of(r.sensor)
        if dev is not None:
            st = self.state[dev.id]
            if st.last_t is None or heard > st.last_t:
                st.last_t = heard
            st.drill = r.drill
            if ctx.active(silence_key) is not None:
                out.append(self._silence_of(dev, heard, ctx))
        if gateway_key is not None:
            gst = self.state[gateway_key]
            if gst.last_t is None or heard > gst.last_t:
                gst.last_t = heard
            gst.online = True
        elif r.gateway in self.gateways:
            gst = self.state[f"gateway:{r.gateway}"]
            if gst.last_t is None or heard > gst.last_t:
                gst.last_t = heard
        if (getattr(ctx, "implausible", None) is None and r.quality is Quality.OK
                and self._stuck.get((r.site, r.quantity), _UNKNOWN) is None):
            fault = None  # the usual reading: nothing flagged, and its quantity is not watched for sticking
        else:
            fault = self._fault(r, t, ctx)
        if fault is not None or ctx.active(fault_key) is not None:
            thr = self.thr(r.site)
            level = thr.fault_level if fault else None
            evidence = [fault] if fault else [f"{r.sensor} 数值恢复正常: {r.value:g} {r.unit}"]
            out.append(Assessment(
                key=fault_key, hazard=Hazard.EQUIPMENT, site=r.site, level=level, mechanics=thr.mechanics,
                rule="equipment-fault", title=f"{self._name(r.site)}监测设备 {r.sensor} 故障" if fault else "",
                evidence=evidence, values={"value": r.value} if r.value == r.value else {}, t=t, drill=r.drill))
        return out

    def _keys_of(self, sensor: str) -> tuple[Device | None, str, str | None, str]:
        """A sensor's device, its silence warning's key, its gateway's state key (if watched) and its fault
        warning's key: built once per sensor, not once per reading."""
        got = self._keys.get(sensor)
        if got is None:
            dev = self.device_of(sensor)
            got = self._keys[sensor] = (
                dev, f"{Hazard.EQUIPMENT}:{dev.id}" if dev is not None else "",
                f"gateway:{dev.gateway}" if dev is not None and dev.gateway in self.gateways else None,
                f"{Hazard.EQUIPMENT}:{sensor}:fault")
        return got

    def _fault(self, r: Reading, t: float, ctx: Context) -> str | None:
        """What is wrong with this reading, in words, or None."""
        # flagged by the edge or outside rules.plausible: the engine judged it once for every pack
        why = getattr(ctx, "implausible", None)
        if why is not None:
            return str(why)
        if r.quality is not Quality.OK:  # an engine without the plausibility check
            return f"{r.sensor} ({r.quantity}) {_QUALITY.get(r.quality, r.quality.value)}, 边缘网关已标记"
        stuck_s = self._stuck.get((r.site, r.quantity), _UNKNOWN)
        if stuck_s is _UNKNOWN:  # resolved once per (site, quantity): most quantities are never watched for it
            stuck_s = self._stuck[(r.site, r.quantity)] = self.thr(r.site).stuck_after_s.get(r.quantity)
        if stuck_s is None:
            return None
        st = self.sensors[r.sensor]
        if t < st.last_t:
            return None  # a late reading says nothing about now
        if st.value != r.value:
            st.value, st.since = r.value, t
        st.last_t = t
        if t - st.since >= stuck_s:
            return f"{r.sensor} ({r.quantity}) 数值 {r.value:g} 已 {_minutes(t - st.since)}未变化, 疑似卡死"
        return None

    # --- gateways and the clock ----------------------------------------------------------------
    def heartbeat(self, gateway: str, online: bool, now: datetime, ctx: Context) -> list[Assessment]:
        if gateway not in self.gateways:
            return []
        st = self.state[f"gateway:{gateway}"]
        t = now.timestamp()
        st.last_t = t if st.last_t is None else max(st.last_t, t)
        st.online = online
        st.heard = True
        return [self._gateway(gateway, t, ctx)]

    def loss(self, component: str, dropped: int, reason: str, now: datetime, ctx: Context) -> list[Assessment]:
        st = self.losses.get(component)
        known = st.dropped if st is not None else 0
        if dropped == known:
            return []  # said again (a retained report, every heartbeat): nothing new
        st = self.losses[component]
        st.dropped = dropped
        if dropped < known:  # the count was reset: what it says now is new
            known = 0
            if dropped == 0:
                return []
        t = now.timestamp()
        active = ctx.active(self._loss_key(component)) is not None
        st.lost = (st.lost if active else 0) + dropped - known
        st.since, st.reason = t, reason
        return [self._loss(component, st, t, quiet=False)]

    @staticmethod
    def _loss_key(component: str) -> str:
        return f"{Hazard.EQUIPMENT}:loss:{component}"

    def _loss(self, component: str, st: LossState, t: float, quiet: bool | None = None) -> Assessment:
        site = self.gateways[component][1] if component in self.gateways else component
        thr = self.thr(site)
        if quiet is None:
            quiet = t - st.since >= thr.loss_quiet_s
        what = f"监测网关 {component}" if component in self.gateways else component
        why = _LOSS.get(st.reason, st.reason or "原因未报")
        evidence = ([f"{what} 已 {_minutes(t - st.since)}未再丢弃数据"] if quiet else
                    [f"{what} 因{why}丢弃了 {st.lost} 条监测数据 (累计 {st.dropped} 条), 这些数据已无法补回",
                     "相关站点的预警判断缺少这部分数据, 请检查设备存储和网络"])
        return Assessment(key=self._loss_key(component), hazard=Hazard.EQUIPMENT, site=site,
                          level=None if quiet else thr.loss_level, mechanics=thr.mechanics, rule="readings-lost",
                          title="" if quiet else f"{what} 丢失 {st.lost} 条监测数据",
                          evidence=evidence, values={"lost": float(st.lost), "dropped": float(st.dropped)}, t=t)

    def tick(self, now: datetime, ctx: Context) -> list[Assessment]:
        t = now.timestamp()
        if self.started is None:
            self.started = t
        out = [self._gateway(gw, t, ctx) for gw in self.gateways]
        out += [self._loss(c, st, t) for c, st in self.losses if ctx.active(self._loss_key(c)) is not None]
        out += [self._silence_of(dev, t, ctx) for dev in self.devices.values()
                if not dev.event_driven and (self.watched is None or dev.id in self.watched)]
        return [a for a in out if a.level is not None or ctx.active(a.key) is not None]

    def _gateway_down(self, gateway: str, t: float) -> tuple[bool, str]:
        hb, site = self.gateways[gateway]
        st = self.state.get(f"gateway:{gateway}")
        if st is None or not st.heard:
            return False, ""  # never heard a heartbeat (e.g. a backtest): its devices' silence speaks
        last = st.last_t
        limit = max(self.thr(site).silence_factor * hb, self.thr(site).min_silence_s)
        if not st.online:
            return True, f"网关 {gateway} 已离线 (遗嘱消息)"
        if last is not None and t - last > limit:
            return True, f"网关 {gateway} 已 {_minutes(t - last)}无心跳和数据 (预期每 {hb:.0f} 秒一次心跳)"
        return False, ""

    def _gateway(self, gateway: str, t: float, ctx: Context) -> Assessment:
        _, site = self.gateways[gateway]
        thr = self.thr(site)
        down, why = self._gateway_down(gateway, t)
        st = self.state.get(f"gateway:{gateway}")
        devs = sorted(d.id for d in self.devices.values() if d.gateway == gateway)
        evidence = [why, f"该网关下设备: {', '.join(devs)}"] if down else [f"网关 {gateway} 恢复在线"]
        return Assessment(
            key=f"{Hazard.EQUIPMENT}:gateway:{gateway}", hazard=Hazard.EQUIPMENT, site=site,
            level=thr.level if down else None, mechanics=thr.mechanics, rule="gateway-silent",
            title=f"监测网关 {gateway} 离线" if down else "", evidence=evidence, t=t,
            drill=bool(st and st.drill))

    def _silence_of(self, dev: Device, t: float, ctx: Context) -> Assessment:
        thr = self.thr(dev.site)
        st = self.state.get(dev.id)
        key = f"{Hazard.EQUIPMENT}:{dev.id}"
        last = st.last_t if st and st.last_t is not None else self.started
        if last is not None and self.started is not None and ctx.active(key) is None:
            # after a (re)start every device gets a full silence period to report: the broker may
            # still be delivering the backlog it kept for us
            last = max(last, self.started)
        limit = max(thr.silence_factor * dev.interval_s, thr.min_silence_s)
        silent = last is not None and t - last > limit
        evidence: list[str] = []
        level = None
        if silent:
            if dev.gateway in self.gateways and self._gateway_down(dev.gateway, t)[0] and ctx.active(key) is None:
                silent = False  # inhibited: the gateway's own warning covers it
            else:
                level = thr.level
                heard = "从未收到数据" if st is None or st.last_t is None else f"已 {_minutes(t - last)}无数据"
                evidence = [f"设备 {dev.id} {heard} (预期每 {dev.interval_s:.0f} 秒一次, 超过 {_minutes(limit)}即告警)",
                            "该设备所在站点的预警判断缺少数据, 不代表平安无事"]
        if not silent:
            evidence = [f"设备 {dev.id} 恢复上报"]
        return Assessment(key=key, hazard=Hazard.EQUIPMENT, site=dev.site, level=level, mechanics=thr.mechanics,
                          rule="device-silent", title=f"{self._name(dev.site)}监测设备 {dev.id} 无数据" if level else "",
                          evidence=evidence, values={"silent_s": round(t - last, 1)} if last is not None else {},
                          t=t, drill=bool(st and st.drill))

    def _name(self, site: str) -> str:
        return self.sites[site].name if site in self.sites else site

    # --- persistence ---------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        out = {f"d/{k}": v for k, v in self.state.dump_dirty().items()}
        out.update({f"s/{k}": v for k, v in self.sensors.dump_dirty().items()})
        out.update({f"l/{k}": v for k, v in self.losses.dump_dirty().items()})
        return out

    def load(self, entity: str, data: dict[str, Any]) -> None:
        kind, _, key = entity.partition("/")
        {"d": self.state, "s": self.sensors, "l": self.losses}.get(kind, self.sensors).load(key, data)
