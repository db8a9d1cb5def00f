"""The message model every part of Yujing speaks: readings in, warnings out.

Timestamps are timezone-aware and UTC on the wire; people see Asia/Shanghai
(see :func:`local_time`). Units live in the ``unit`` field and in quantity
names (``rain_mm``, ``level_m``).
"""

from __future__ import annotations

import enum
import math
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import (AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler,
                      model_serializer, model_validator)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def local_time(ts: datetime, tz: ZoneInfo = SHANGHAI) -> str:
    """A timestamp as people read it on a warning: ``2026-07-14 03:05`` Beijing time."""
    return ts.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _utc(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc)


# AwareDatetime refuses a naive timestamp inside pydantic-core; only the conversion to UTC runs in Python
# (checking awareness in Python too made validating a reading ~25 % slower).
AwareUTC = Annotated[AwareDatetime, AfterValidator(_utc)]


class Level(enum.StrEnum):
    """The Chinese four-colour warning scale. Level I (red) is the most severe."""

    BLUE = "blue"
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"

    @property
    def severity(self) -> int:
        """1 (blue) .. 4 (red): bigger is worse, so levels compare naturally."""
        return _SEVERITY[self]

    @property
    def roman(self) -> str:
        return {1: "IV", 2: "III", 3: "II", 4: "I"}[self.severity]

    @property
    def chinese(self) -> str:
        return {1: "蓝色", 2: "黄色", 3: "橙色", 4: "红色"}[self.severity]

    def __lt__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Level):
            return NotImplemented
        return self.severity < other.severity

    def __le__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Level):
            return NotImplemented
        return self.severity <= other.severity

    def __gt__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Level):
            return NotImplemented
        return self.severity > other.severity

    def __ge__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Level):
            return NotImplemented
        return self.severity >= other.severity


_SEVERITY = {Level.BLUE: 1, Level.YELLOW: 2, Level.ORANGE: 3, Level.RED: 4}


class Hazard(enum.StrEnum):
    RAINSTORM = "rainstorm"  # 暴雨
    TORRENT = "torrent"  # 山洪
    RESERVOIR = "reservoir"  # 水库
    RIVER = "river"  # 河流
    LANDSLIDE = "landslide"  # 滑坡
    FIRE = "fire"  # 森林火灾
    EQUIPMENT = "equipment"  # 设备故障
    OTHER = "other"  # 其他突发事件: a warning from above that maps to no hazard of ours still routes

    @property
    def chinese(self) -> str:
        return {
            "rainstorm": "暴雨",
            "torrent": "山洪",
            "reservoir": "水库水位",
            "river": "河道水位",
            "landslide": "滑坡",
            "fire": "森林火灾",
            "equipment": "监测设备",
            "other": "突发事件",
        }[self.value]


class Quality(enum.StrEnum):
    OK = "ok"
    OUT_OF_RANGE = "out-of-range"
    STUCK = "stuck"
    COMM_ERROR = "comm-error"


class Q(enum.StrEnum):
    """Quantities the rule packs understand. Others may be stored, but no rule reads them."""

    RAIN_COUNT_MM = "rain_count_mm"  # tipping-bucket counter × mm per tip: cumulative, rolls over, resets
    RAIN_MM = "rain_mm"  # rainfall over the reading's own period (e.g. SL651 element 20)
    LEVEL_M = "level_m"  # water level above datum (reservoir, river)
    DISPLACEMENT_MM = "displacement_mm"  # cumulative displacement: crack meter, GNSS, inclinometer
    SMOKE = "smoke_confidence"  # fire camera detection, 0..1
    FLAME = "flame_confidence"  # fire camera detection, 0..1
    FIRE_DANGER = "fire_danger"  # the day's forest-fire danger rating 1..5 (森林火险等级)


class Reading(BaseModel):
    """One measured value from one sensor at one site.

    ``id`` is unique per reading and stable across re-sends (the edge outbox
    may publish a reading twice after a reconnect), so stores de-duplicate on it.
    ``value`` may be NaN only when quality is not ``ok``.
    """

    # NaN/inf travel as the strings "NaN"/"Infinity" (valid JSON that round-trips); null would not parse back.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")

    id: str = Field(min_length=1, max_length=128)
    site: str = Field(min_length=1, max_length=64)
    sensor: str = Field(min_length=1, max_length=64)
    quantity: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    value: float
    unit: str = Field(max_length=16)
    ts: AwareUTC
    quality: Quality = Quality.OK
    gateway: str = Field(default="", max_length=64)
    drill: bool = False
    meta: dict[str, str] = Field(default_factory=dict, max_length=16)  # e.g. a camera's bearing, snapshot ref

    def model_post_init(self, _ctx: Any) -> None:
        if not math.isfinite(self.value) and self.quality is Quality.OK:
            raise ValueError("value is not finite but quality is 'ok'")


def new_id() -> str:
    return uuid.uuid4().hex


class ReadingBatch(BaseModel):
    """What a gateway publishes: all readings of one poll in one message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gateway: str = Field(min_length=1, max_length=64)
    readings: list[Reading]


class WarningState(enum.StrEnum):
    ISSUED = "issued"  # 发布
    UPGRADED = "upgraded"  # 升级
    DOWNGRADED = "downgraded"  # 降级
    LIFTED = "lifted"  # 解除

    @property
    def chinese(self) -> str:
        return {"issued": "发布", "upgraded": "升级", "downgraded": "降级", "lifted": "解除"}[self.value]


RULE_SOURCE = "rule"


class HazardWarning(BaseModel):
    """A graded warning about one hazard at one site, or over one area node (a warning from above).

    ``key`` names the condition (hazard + site [+ rule]); it stays the same
    through upgrades, downgrades and the lift. ``version`` increases with every
    change of level or state, so ``(key, version)`` identifies one message and
    is what notifications are de-duplicated on.

    ``source`` says who raised it: ``rule`` (a rule on sensor readings), ``cap:<sender>`` (a CAP document
    from an upper-level platform) or ``operator:<user>`` (the duty office). A warning from above may be
    addressed to an area node: ``site`` empty and ``area`` the node it is routed down from.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1)
    version: int = Field(ge=1)
    hazard: Hazard
    level: Level
    state: WarningState
    site: str
    area: str = ""  # administrative node id the site belongs to; for an area warning, the node it is addressed to
    rule: str = ""
    title: str = ""
    evidence: list[str] = Field(default_factory=list)
    values: dict[str, float] = Field(default_factory=dict)
    issued_at: AwareUTC
    updated_at: AwareUTC
    drill: bool = False
    source: str = Field(default=RULE_SOURCE, pattern=r"^(rule|cap:\S+|operator:\S+)$")
    headline: str = Field(default="", max_length=200)  # a warning from above: its headline (CAP <headline>)
    instruction: str = Field(default="", max_length=2000)  # … what to do (CAP <instruction>, the operator's text)
    sender_name: str = Field(default="", max_length=200)  # … the issuing authority, named in the text
    expires: AwareUTC | None = None  # … lifted by its issuer when this passes

    @model_validator(mode="after")
    def _placed(self) -> "HazardWarning":
        if not self.site and not self.area:
            raise ValueError("a warning needs a site or an area")
        return self

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The fields of warnings from above are left out while they hold their defaults: a rule's warning
        # stays byte-for-byte what it was, so parts not yet upgraded (extra="forbid") still read it.
        out = handler(self)
        for name, default in _FROM_ABOVE_DEFAULTS.items():
            if name in out and out[name] == default:
                del out[name]
        return out

    @property
    def id(self) -> str:
        return f"{self.key}#{self.version}"

    @property
    def place(self) -> str:
        """The site, or ``@<area>`` for a warning addressed to an area: one topic level, never a site id."""
        return self.site or f"@{self.area}"

    @property
    def from_above(self) -> bool:
        return self.source != RULE_SOURCE


_FROM_ABOVE_DEFAULTS: dict[str, Any] = {"source": RULE_SOURCE, "headline": "", "instruction": "",
                                        "sender_name": "", "expires": None}
