"""A scenario: what the simulated field reports over time, how people answer, and what should follow.

A scenario file is YAML, validated once with file:line errors (the same loader as the deployment):

    name: 夏季暴雨山洪演练
    duration: 6h                      # scenario time; times below are offsets from the start
    speed: 600                        # suggested clock speed (yujing drill --speed overrides)
    storms:                           # rain cells moving across the county
      - track: [[0m, 30.45, 107.80], [3h, 30.35, 108.20]]   # offset, lat, lon of the centre
        radius_km: 12                 # Gaussian footprint: rate × e^-(d/r)²
        rate_mm_h: [[0m, 0], [30m, 60], [2h, 60], [3h, 0]]  # peak rate at the centre
    rain: [{sites: [RG-SHIBAO-01], rate_mm_h: [[0, 0], [1h, 40]]}]
    levels: [{site: SK-SHIBAO-01, level_m: [[0, 380.2], [2h, 384.0]]}]
    landslides: [{site: HP-SHIBAO-001, creep_mm_d: 0.5, accelerate_at: 3h, failure_at: 14h}]
    fire: [{cameras: [fc-shibao-01a], smoke: [[0, 0], [1h, 0.8]]}]
    faults:
      - {device: rg-shibao-01, fault: offline, at: 2h, until: 3h}
      - {gateway: gw-shibao, fault: link_down, at: 1h, until: 1h30m}   # a 4G link dropping
      - {gateway: gw-tujing, fault: dark, at: 4h}                      # a gateway losing power
    calls:                            # how the Twilio stand-in answers (first matching rule wins)
      default: {answer_after_s: 40, press: "1"}
      rules:
        - {who: {role: group_leader, area: shibao}, never_answer: true}
    expect:                           # what the drill report must show
      warnings: [{hazard: rainstorm, site: RG-SHIBAO-01, level: blue, by: 3h}]

Offsets and durations are seconds or strings like ``90s``, ``30m``, ``2h``, ``1h30m``, ``1d``.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from yujing.config.loader import read_merged, validate
from yujing.config.people import Role
from yujing.model import Hazard, Level

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(v: Any) -> float:
    """``90``, ``"90s"``, ``"30m"``, ``"1h30m"``, ``"1d"`` → seconds."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if re.fullmatch(r"-?\d+(\.\d+)?", s):
            return float(s)
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", s)
        if parts and re.fullmatch(r"(\s*\d+(?:\.\d+)?\s*[smhd])+\s*", s):
            return sum(float(n) * _UNITS[u] for n, u in parts)
    raise ValueError(f"not a duration: {v!r} (use seconds or e.g. 90s, 30m, 2h, 1h30m, 1d)")


Seconds = Annotated[float, BeforeValidator(parse_duration)]


def _point(v: Any) -> Any:
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return (parse_duration(v[0]), v[1])
    raise ValueError("a series point is [offset, value], e.g. [30m, 42.5]")


Point = Annotated[tuple[float, float], BeforeValidator(_point)]
Series = Annotated[list[Point], Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _track_point(v: Any) -> Any:
    if isinstance(v, (list, tuple)) and len(v) == 3:
        return (parse_duration(v[0]), v[1], v[2])
    raise ValueError("a track point is [offset, lat, lon]")


class Storm(_Strict):
    name: str = ""
    track: Annotated[list[Annotated[tuple[float, float, float], BeforeValidator(_track_point)]], Field(min_length=1)]
    radius_km: float = Field(default=12.0, gt=0)
    rate_mm_h: Series


class SiteRain(_Strict):
    sites: list[str] = Field(min_length=1)
    rate_mm_h: Series


class SiteLevel(_Strict):
    site: str
    level_m: Series


class Landslide(_Strict):
    """Creep at ``creep_mm_d``, then from ``accelerate_at`` the inverse velocity falls linearly to zero at
    ``failure_at`` (Fukuzono 1985): the curve a tangent-angle or inverse-velocity rule should catch."""

    site: str
    creep_mm_d: float = Field(default=0.5, gt=0)
    start_mm: float = 0.0
    accelerate_at: Seconds | None = None
    failure_at: Seconds | None = None
    stop_at_mm: float = Field(default=3000.0, gt=0)  # the sensor's end of travel (the slope has gone)

    @model_validator(mode="after")
    def _order(self) -> "Landslide":
        if (self.accelerate_at is None) != (self.failure_at is None):
            raise ValueError("give both accelerate_at and failure_at, or neither")
        if self.accelerate_at is not None and self.failure_at <= self.accelerate_at:  # type: ignore[operator]
            raise ValueError("failure_at must come after accelerate_at")
        return self


class Fire(_Strict):
    cameras: list[str] = Field(min_length=1)
    smoke: Series | None = None
    flame: Series | None = None
    bearing_deg: float | None = None


class FaultKind(enum.StrEnum):
    OFFLINE = "offline"  # device: the link goes away
    HANG = "hang"  # device: stays connected, never answers
    GARBLED = "garbled"  # device: corrupt frames
    LINK_DOWN = "link_down"  # gateway: its 4G uplink drops (it keeps polling into its outbox)
    DARK = "dark"  # gateway: loses power (no polls, no heartbeat) until ``until``


GATEWAY_FAULTS = (FaultKind.LINK_DOWN, FaultKind.DARK)


class FaultEvent(_Strict):
    device: str | None = None
    gateway: str | None = None
    fault: FaultKind
    at: Seconds
    until: Seconds | None = None

    @model_validator(mode="after")
    def _target(self) -> "FaultEvent":
        if (self.device is None) == (self.gateway is None):
            raise ValueError("name exactly one of 'device' or 'gateway'")
        if (self.gateway is not None) != (self.fault in GATEWAY_FAULTS):
            raise ValueError("devices take offline/hang/garbled; gateways take link_down/dark")
        if self.until is not None and self.until <= self.at:
            raise ValueError("'until' must come after 'at'")
        return self


class Who(_Strict):
    """Selects people: every given field must match. ``area`` matches the area or anything under it."""

    role: Role | None = None
    tier: str | None = None  # city | county | township | village | group | household
    area: str | None = None
    phone: str | None = None
    name: str | None = None


class Answer(_Strict):
    answer_after_s: Seconds = 30.0  # scenario seconds from the call ringing to pick-up
    press: str = "1"  # the key pressed to confirm (叫应)
    never_answer: bool = False
    reply_sms: str | None = None  # an SMS reply instead (e.g. "1" or "收到")


class CallRule(Answer):
    who: Who


class Calls(_Strict):
    default: Answer = Field(default_factory=Answer)
    rules: list[CallRule] = Field(default_factory=list)


class ExpectedWarning(_Strict):
    hazard: Hazard
    site: str | None = None
    area: str | None = None  # any site under this area
    level: Level  # at least this level is reached
    after: Seconds = 0.0
    by: Seconds | None = None  # reached no later than this offset
    at_most: bool = False  # the level is the highest reached (false alarms must not climb)


class Expect(_Strict):
    warnings: list[ExpectedWarning] = Field(default_factory=list)
    none_above: list[ExpectedWarning] = Field(default_factory=list)  # level = the ceiling, never exceeded
    lifted: list[ExpectedWarning] = Field(default_factory=list)  # these warnings are lifted by the end
    min_notified: int = Field(default=0, ge=0)  # at least this many people told
    # trigger → every household within this many per cent of the bound the provider's limits impose
    within_bound_pct: float | None = Field(default=None, gt=0)


class Scenario(_Strict):
    """A drill script; see the module docstring. ``participants`` selects who the drill's warnings reach
    (alerts sends drill warnings only to its drill recipients: ``alerts.drill.recipients`` plus these)."""

    name: str
    description: str = ""
    hazard: Hazard | None = None  # the scenario's main hazard, for the report's title
    duration: Seconds = Field(gt=0)
    speed: float = Field(default=600.0, gt=0)
    storms: list[Storm] = Field(default_factory=list)
    rain: list[SiteRain] = Field(default_factory=list)
    levels: list[SiteLevel] = Field(default_factory=list)
    landslides: list[Landslide] = Field(default_factory=list)
    fire: list[Fire] = Field(default_factory=list)
    faults: list[FaultEvent] = Field(default_factory=list)
    calls: Calls = Field(default_factory=Calls)
    expect: Expect = Field(default_factory=Expect)
    participants: list[Who] = Field(default_factory=list)
    # the Twilio stand-in enforces Twilio's published limits (1 SMS segment/s per long-code sender, 1 call/s
    # per account) so the drill measures the fan-out a real provider would allow
    provider_limits: bool = False
    scope: list[str] = Field(default_factory=list)  # extra site ids to simulate in a drill (beyond the scripted)
    # 加密监测: in a drill these sites' devices report every N scenario seconds, as stations do once
    # deformation or water rises (an RTU's added reports); site id -> interval_s
    intensive: dict[str, Seconds] = Field(default_factory=dict)

    def scripted_sites(self) -> set[str]:
        out = {s for r in self.rain for s in r.sites} | {lv.site for lv in self.levels}
        return out | {ls.site for ls in self.landslides} | set(self.scope) | set(self.intensive)

    def scripted_devices(self) -> set[str]:
        return {c for f in self.fire for c in f.cameras} | {f.device for f in self.faults if f.device}


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises ConfigError naming file, line and field."""
    data, marks = read_merged(Path(path))
    return validate(Scenario, data, marks, context={})


def check_against(scn: Scenario, cfg: Any) -> list[str]:
    """References from the scenario into the deployment: sites, devices, gateways that must exist."""
    sites = {s.id for s in cfg.sites}
    devices = {d.id for g in cfg.gateways for d in g.devices}
    gateways = {g.id for g in cfg.gateways}
    problems = [f"no site {s!r} in the deployment" for s in sorted(scn.scripted_sites() - sites)]
    problems += [f"no device {d!r} in the deployment" for d in sorted(scn.scripted_devices() - devices)]
    problems += [f"no gateway {f.gateway!r} in the deployment" for f in scn.faults
                 if f.gateway and f.gateway not in gateways]
    for e in scn.expect.warnings + scn.expect.none_above + scn.expect.lifted:
        if e.site and e.site not in sites:
            problems.append(f"expect: no site {e.site!r} in the deployment")
    return problems
