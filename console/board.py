"""The county on one board: sites, the warnings in force, the gateways' heartbeats. Pure state, no I/O.

:class:`Board` is what the map and the lists are drawn from. ``console/live.py`` feeds it (retained
warnings and heartbeats from MQTT); every change returns the sites whose colour it touched, so the
browser is sent those and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from yujing.compose import Config
from yujing.config import Tier
from yujing.model import Hazard, HazardWarning, Level, WarningState


@dataclass(frozen=True, slots=True)
class SiteInfo:
    id: str
    name: str
    kind: str
    area: str
    township: str  # the township (乡镇/街道) id the site lies in: the map's first filter
    village: str
    lat: float | None
    lon: float | None
    gateway: str
    devices: tuple[str, ...]


@dataclass(slots=True)
class SiteState:
    level: Level | None = None
    hazards: tuple[str, ...] = ()
    silent: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"level": self.level.value if self.level else None, "hazards": list(self.hazards),
                "silent": self.silent}


def _is_silence(w: HazardWarning) -> bool:
    """An equipment warning that says data is missing (silence), not a fault or a loss."""
    return w.hazard is Hazard.EQUIPMENT and not w.key.endswith(":fault") and not w.key.startswith("equipment:loss:")


@dataclass
class Board:
    config: Config
    sites: dict[str, SiteInfo] = field(default_factory=dict)
    warnings: dict[str, HazardWarning] = field(default_factory=dict)  # in force, by key
    heartbeats: dict[str, dict[str, Any]] = field(default_factory=dict)  # gateway -> its latest status
    states: dict[str, SiteState] = field(default_factory=dict)
    _under: dict[str, list[str]] = field(default_factory=dict)  # area id -> site ids at or below it
    _by_device: dict[str, str] = field(default_factory=dict)  # device id -> site id
    _by_gateway: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cfg = self.config
        devices: dict[str, list[tuple[str, str]]] = {}
        for gw in cfg.gateways:
            for d in gw.devices:
                devices.setdefault(d.site, []).append((gw.id, d.id))
                self._by_device[d.id] = d.site
        for s in cfg.sites:
            lineage = cfg.lineage(s.area) if s.area in {a.id for a in cfg.areas} else []
            tiers = {a.tier: a.id for a in lineage}
            devs = devices.get(s.id, [])
            self.sites[s.id] = SiteInfo(
                id=s.id, name=s.name, kind=s.kind.value, area=s.area, township=tiers.get(Tier.TOWNSHIP, ""),
                village=tiers.get(Tier.VILLAGE, ""), lat=s.lat, lon=s.lon, gateway=devs[0][0] if devs else "",
                devices=tuple(d for _, d in devs))
            for a in lineage:
                self._under.setdefault(a.id, []).append(s.id)
            for gw in {g for g, _ in devs}:
                self._by_gateway.setdefault(gw, []).append(s.id)
            self.states[s.id] = SiteState()

    # ---- changes in ------------------------------------------------------------------------------
    def put_warning(self, w: HazardWarning) -> list[str]:
        """A warning as published (any state); returns the site ids whose state changed."""
        old = self.warnings.get(w.key)
        if old is not None and old.version > w.version:
            return []  # an older retained copy arriving late changes nothing
        if w.state is WarningState.LIFTED:
            self.warnings.pop(w.key, None)
        else:
            self.warnings[w.key] = w
        touched = set(self._sites_of(w)) | (set(self._sites_of(old)) if old is not None else set())
        return self._recompute(touched)

    def clear_warning(self, key: str) -> list[str]:
        """A retained slot emptied: the warning is gone."""
        old = self.warnings.pop(key, None)
        return self._recompute(set(self._sites_of(old))) if old is not None else []

    def put_heartbeat(self, gateway: str, status: dict[str, Any]) -> list[str]:
        self.heartbeats[gateway] = status
        return self._recompute(set(self._by_gateway.get(gateway, [])))

    # ---- reading -----------------------------------------------------------------------------------
    def _sites_of(self, w: HazardWarning | None) -> list[str]:
        if w is None:
            return []
        if w.site in self.sites:
            if w.key.startswith("equipment:gateway:"):
                return self._by_gateway.get(w.key.rsplit(":", 1)[-1], [w.site])
            return [w.site]
        if w.area:  # addressed to an area (an operator's or a CAP warning): every site under it
            return self._under.get(w.area, [])
        return []

    def _recompute(self, site_ids: set[str]) -> list[str]:
        by_site: dict[str, list[HazardWarning]] = {s: [] for s in site_ids}
        for w in self.warnings.values():
            for s in self._sites_of(w):
                if s in by_site:
                    by_site[s].append(w)
        changed = []
        for sid, ws in by_site.items():
            hazards = [w for w in ws if w.hazard is not Hazard.EQUIPMENT]
            level = max((w.level for w in hazards), default=None)
            state = SiteState(level, tuple(sorted({w.hazard.value for w in hazards})), self._silent(sid, ws))
            if state != self.states.get(sid):
                self.states[sid] = state
                changed.append(sid)
        return changed

    def _silent(self, site_id: str, ws: list[HazardWarning]) -> bool:
        """Grey on the map: the gateway is down, or every device of the site is silent or offline."""
        info = self.sites[site_id]
        if not info.devices:
            return False
        silent_keys = {w.key for w in ws if _is_silence(w)}
        if f"equipment:gateway:{info.gateway}" in silent_keys:
            return True
        hb = self.heartbeats.get(info.gateway)
        if hb is not None and hb.get("online") is False:
            return True
        states = (hb or {}).get("devices") or {}
        return all(f"equipment:{d}" in silent_keys or (states.get(d) or {}).get("state") == "offline"
                   for d in info.devices)

    def in_force(self, *, include_equipment: bool = False) -> list[HazardWarning]:
        ws = [w for w in self.warnings.values() if include_equipment or w.hazard is not Hazard.EQUIPMENT]
        return sorted(ws, key=lambda w: (-w.level.severity, w.updated_at), reverse=False)

    def equipment(self) -> list[HazardWarning]:
        return sorted((w for w in self.warnings.values() if w.hazard is Hazard.EQUIPMENT),
                      key=lambda w: w.updated_at, reverse=True)

    def township_of(self, w: HazardWarning) -> str:
        info = self.sites.get(w.site)
        if info is not None:
            return info.township
        try:
            return next((a.id for a in self.config.lineage(w.area) if a.tier is Tier.TOWNSHIP), "")
        except KeyError:
            return ""

    def site_of_device(self, device: str) -> str | None:
        return self._by_device.get(device)

    def device_rows(self) -> list[dict[str, Any]]:
        """Every configured device with what its gateway last said of it (ok / degraded / offline)."""
        rows = []
        for gw in self.config.gateways:
            hb = self.heartbeats.get(gw.id) or {}
            states = hb.get("devices") or {}
            for d in gw.devices:
                st = states.get(d.id) or {}
                warned = [w for w in self.warnings.values()
                          if w.hazard is Hazard.EQUIPMENT and (w.key == f"equipment:{d.id}"
                                                               or w.key.startswith(f"equipment:{d.id}:"))]
                state = st.get("state") or ("unknown" if not hb else "ok")
                if hb and hb.get("online") is False:
                    state = "offline"
                rows.append({"device": d.id, "site": d.site, "gateway": gw.id, "type": d.type, "state": state,
                             "last_ok": st.get("last_ok"), "error": st.get("error") or "",
                             "outbox_depth": hb.get("outbox_depth"), "warnings": [w.title for w in warned]})
        return rows

    def gateway_rows(self) -> list[dict[str, Any]]:
        rows = []
        for gw in self.config.gateways:
            hb = self.heartbeats.get(gw.id)
            states = [s.get("state") for s in ((hb or {}).get("devices") or {}).values()]
            rows.append({"gateway": gw.id, "name": gw.name or gw.id, "devices": len(gw.devices),
                         "online": None if hb is None else bool(hb.get("online")), "ts": (hb or {}).get("ts"),
                         "outbox_depth": (hb or {}).get("outbox_depth"), "dropped": (hb or {}).get("outbox_dropped"),
                         "offline": states.count("offline"), "degraded": states.count("degraded"),
                         "warned": f"equipment:gateway:{gw.id}" in self.warnings})
        return rows


def warning_json(w: HazardWarning, tz: Any) -> dict[str, Any]:
    """A warning as the browser reads it: the model's own fields plus local times and a source."""
    d = w.model_dump(mode="json")
    d["source"] = source_of(w)
    d["issued_local"] = _local(w.issued_at, tz)
    d["updated_local"] = _local(w.updated_at, tz)
    return d


def source_of(w: HazardWarning) -> str:
    """Where a warning came from: its ``source`` when the model carries one (operator, CAP), else its rule."""
    src = getattr(w, "source", "") or "rule"
    return f"rule:{w.rule}" if src == "rule" and w.rule else src


def _local(ts: datetime, tz: Any) -> str:
    return ts.astimezone(tz).strftime("%m-%d %H:%M")
