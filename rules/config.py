"""Rule thresholds and mechanics: national defaults in ``rules:``, overridable per site in ``thresholds:``.

Every pack has one model used twice: once under ``rules:`` (the deployment's defaults) and once
under a site's ``thresholds:`` (only the fields a site sets override; see :func:`effective`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from yujing.model import Level


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Mechanics(_Strict):
    """How a pack's warnings live: Prometheus-style ``for`` and Alertmanager-like hold before lifting."""

    for_s: float = Field(default=0.0, ge=0)  # condition must hold this long before the first issue (pending)
    clear_after_s: float = Field(default=3600.0, ge=0)  # below the level this long before a downgrade/lift


_WINDOWS = (1, 3, 6, 12, 24)


def _check_windows(table: dict[int, float], what: str) -> None:
    for hours, mm in table.items():
        if hours not in _WINDOWS:
            raise ValueError(f"{what}: window {hours} h is not one of {list(_WINDOWS)}")
        if mm <= 0:
            raise ValueError(f"{what}: threshold for {hours} h must be positive, got {mm}")


class RainThresholds(_Strict):
    """Rolling rainfall accumulations (mm) per colour: CMA Order 16 暴雨预警信号 by default.

    Each colour is a table ``{window hours: mm}``; any window reaching its amount raises that colour.
    """

    blue: dict[int, float] = Field(default_factory=lambda: {12: 50.0})  # window hours -> mm
    yellow: dict[int, float] = Field(default_factory=lambda: {6: 50.0})
    orange: dict[int, float] = Field(default_factory=lambda: {3: 50.0})
    red: dict[int, float] = Field(default_factory=lambda: {3: 100.0})
    hysteresis_mm: float = Field(default=2.0, ge=0)  # stay at a level until the total falls this far below it
    # the counter wraps to 0 on reaching this: a 16-bit register of 0.1 mm tips (65536 × 0.1 mm). A gauge with
    # other tips sets its own (0.5 mm tips: 32768); null: the counter never wraps (a drop is a reset or a glitch)
    counter_max_mm: float | None = Field(default=6553.6, gt=0)
    max_rate_mm_per_h: float = Field(default=250.0, gt=0)  # a counter jump faster than this is not rain
    gap_s: float = Field(default=900.0, gt=0)  # a longer silence is a gap: its rain is spread over it
    mechanics: Mechanics = Field(default_factory=lambda: Mechanics(clear_after_s=3600.0))

    @model_validator(mode="after")
    def _windows(self) -> RainThresholds:
        for lv in Level:
            _check_windows(getattr(self, lv.value), lv.value)
        return self

    def table(self) -> dict[Level, dict[int, float]]:
        return {lv: getattr(self, lv.value) for lv in Level}


class TorrentThresholds(_Strict):
    """Mountain-torrent per-village thresholds (mm per window): 准备转移 and 立即转移. No national default."""

    prepare: dict[int, float] = Field(default_factory=dict)  # 准备转移
    evacuate: dict[int, float] = Field(default_factory=dict)  # 立即转移
    prepare_level: Level = Level.ORANGE
    evacuate_level: Level = Level.RED
    hysteresis_mm: float = Field(default=2.0, ge=0)
    mechanics: Mechanics = Field(default_factory=lambda: Mechanics(clear_after_s=3600.0))

    @model_validator(mode="after")
    def _windows(self) -> TorrentThresholds:
        _check_windows(self.prepare, "prepare")
        _check_windows(self.evacuate, "evacuate")
        if self.prepare_level > self.evacuate_level:
            raise ValueError("prepare_level (准备转移) cannot be more severe than evacuate_level (立即转移)")
        return self

    @property
    def defined(self) -> bool:
        return bool(self.prepare or self.evacuate)


_RES_ORDER = ("flood_limit_m", "flood_control_high_m", "design_flood_m", "check_flood_m", "crest_m")


class ReservoirThresholds(_Strict):
    """A reservoir's characteristic levels (m above datum, from its design documents) and rate of rise."""

    flood_limit_m: float | None = None  # 汛限水位 -> blue
    flood_control_high_m: float | None = None  # 防洪高水位 -> yellow
    design_flood_m: float | None = None  # 设计洪水位 -> orange
    check_flood_m: float | None = None  # 校核洪水位 -> red
    crest_m: float | None = None  # 坝顶高程
    crest_margin_m: float = Field(default=0.5, ge=0)  # within this of the crest -> red
    rise_rate_m_per_h: float | None = Field(default=0.3, gt=0)  # faster while above flood-limit -> orange
    rise_window_s: float = Field(default=3600.0, gt=0)
    hysteresis_m: float = Field(default=0.05, ge=0)
    mechanics: Mechanics = Field(default_factory=lambda: Mechanics(clear_after_s=1800.0))

    @model_validator(mode="after")
    def _ordered(self) -> ReservoirThresholds:
        given = [(n, getattr(self, n)) for n in _RES_ORDER if getattr(self, n) is not None]
        for (a, va), (b, vb) in zip(given, given[1:]):
            if va > vb:
                raise ValueError(f"{a} ({va}) must not be above {b} ({vb})")
        return self


class RiverThresholds(_Strict):
    warning_m: float | None = None  # 警戒水位 -> yellow
    guarantee_m: float | None = None  # 保证水位 -> red
    warning_level: Level = Level.YELLOW
    guarantee_level: Level = Level.RED
    hysteresis_m: float = Field(default=0.05, ge=0)
    mechanics: Mechanics = Field(default_factory=lambda: Mechanics(clear_after_s=1800.0))

    @model_validator(mode="after")
    def _ordered(self) -> RiverThresholds:
        if self.warning_m is not None and self.guarantee_m is not None and self.warning_m > self.guarantee_m:
            raise ValueError(f"warning_m ({self.warning_m}) must not be above guarantee_m ({self.guarantee_m})")
        return self


class LandslideThresholds(_Strict):
    """Deformation criteria: improved tangent angle (Xu Qiang) with a per-site reference velocity,
    or simple rate thresholds (mm/day) where no calm-period reference exists."""

    reference_mm_per_day: float | None = Field(default=None, gt=0)  # v of the uniform-velocity stage
    # tangent angle cut points (degrees); uniform velocity is ≈45°, so blue starts a little below it
    angle_deg: dict[Level, float] = Field(default_factory=lambda: {
        Level.BLUE: 40.0, Level.YELLOW: 50.0, Level.ORANGE: 80.0, Level.RED: 85.0})
    rate_mm_per_day: dict[Level, float] = Field(default_factory=dict)  # fallback: e.g. {blue: 1, red: 20}
    smoothing_s: float = Field(default=6 * 3600.0, gt=0)  # rate = displacement over this window ...
    # ... and over at least this many readings, however far apart: a daily 群测群防 reading or a GNSS fix every
    # few hours is graded over its last readings, not never
    min_points: int = Field(default=3, ge=2)
    # a rate over a longer span says nothing about now: the site is then not graded, and its maintainer is told
    max_window_s: float = Field(default=7 * 86400.0, gt=0)
    min_span_s: float = Field(default=3600.0, gt=0)  # no rate before this much data is in the window
    persist_n: int = Field(default=3, ge=1)  # a level counts after this many consecutive readings reach it
    hysteresis_deg: float = Field(default=2.0, ge=0)
    hysteresis_frac: float = Field(default=0.1, ge=0, lt=1)  # of a rate threshold
    failure_window_s: float = Field(default=2 * 86400.0, gt=0)  # inverse-velocity fit over this span
    rain_sites: list[str] = Field(default_factory=list)  # rain warnings here also raise this site's watch
    rain_level: Level = Level.YELLOW  # rainstorm/torrent warning at or above this couples in
    mechanics: Mechanics = Field(default_factory=lambda: Mechanics(clear_after_s=6 * 3600.0))

    @model_validator(mode="after")
    def _cuts(self) -> LandslideThresholds:
        for name in ("angle_deg", "rate_mm_per_day"):
            table = getattr(self, name)
            ordered = [table[lv] for lv in Level if lv in table]
            if ordered != sorted(ordered):
                raise ValueError(f"{name}: cut points must rise with the level (blue < yellow < orange < red)")
        if any(not 0 < a < 90 for a in self.angle_deg.values()):
            raise ValueError("angle_deg: cut points must lie strictly between 0 and 90 degrees")
        return self


class FireThresholds(_Strict):
    """Camera detections confirmed by persistence or a second camera; the day's danger rating grades them."""

    min_confidence: float = Field(default=0.5, ge=0, le=1)
    confirm_n: int = Field(default=3, ge=1)  # this many detections by one camera ...
    confirm_window_s: float = Field(default=300.0, gt=0)  # ... within this window confirm a fire
    two_cameras: bool = True  # detections by two cameras within the window also confirm
    unconfirmed_level: Level | None = Level.BLUE  # a lone detection: 疑似火情
    confirmed_level: dict[int, Level] = Field(default_factory=lambda: {  # by the day's danger rating 1..5
        1: Level.YELLOW, 2: Level.YELLOW, 3: Level.ORANGE, 4: Level.ORANGE, 5: Level.RED})
    danger_level: dict[int, Level] = Field(default_factory=lambda: {  # 森林火险预警 by rating alone
        3: Level.BLUE, 4: Level.ORANGE, 5: Level.RED})
    default_danger: int = Field(default=3, ge=1, le=5)  # before any rating has been received, or once it expired
    # a rating is a daily forecast: with none newer after this long, the danger warning lifts and fires are
    # graded by default_danger again (a red rating must not stand for ever when its feed stops)
    danger_valid_s: float = Field(default=36 * 3600.0, gt=0)
    mechanics: Mechanics = Field(default_factory=lambda: Mechanics(clear_after_s=1800.0))

    @model_validator(mode="after")
    def _ratings(self) -> FireThresholds:
        for name in ("confirmed_level", "danger_level"):
            bad = [r for r in getattr(self, name) if not 1 <= r <= 5]
            if bad:
                raise ValueError(f"{name}: danger ratings are 1..5, got {bad}")
        return self


class Bounds(_Strict):
    """What a sensor of one kind can plausibly read. Outside it a reading is a fault, never a measurement."""

    min: float | None = None
    max: float | None = None
    # period quantities (rain over the reading's own period, the device's configured interval): at most this
    # much in one hour, scaled to other periods as the world-record envelope is (Jennings: every rainfall ever
    # recorded lies under 422 mm × D^0.475, D in hours): 129 mm in 5 min, 422 in 1 h. 999 mm in one 5-min step
    # is refused; no real cloudburst is
    max_1h: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not be above max ({self.max})")
        return self


class PlausibleThresholds(_Strict):
    """Plausible ranges per sensor kind (the quantity a rule reads); a site overrides any of them.

    A reading outside its range raises the equipment fault and is excluded from every hazard pack (as a
    reading the edge flagged is), and the hazard warnings of its site say that data was excluded.
    """

    # no negative rain; nor more than the world-record envelope for the reading's period (see max_1h), nor
    # 500 mm in one reading of any period
    rain_mm: Bounds | None = Field(default_factory=lambda: Bounds(min=0.0, max=500.0, max_1h=422.0))
    rain_count_mm: Bounds | None = Field(default_factory=lambda: Bounds(min=0.0))  # a counter never goes negative
    # above datum (1985 黄海高程): below the Turpan depression or above Everest is no water level on Earth; a
    # site sets its own from its survey (the example: dam foot − 5 m .. crest + 3 m)
    level_m: Bounds | None = Field(default_factory=lambda: Bounds(min=-160.0, max=8850.0))
    displacement_mm: Bounds | None = None  # cumulative from an arbitrary zero: per site only
    smoke_confidence: Bounds | None = Field(default_factory=lambda: Bounds(min=0.0, max=1.0))
    flame_confidence: Bounds | None = Field(default_factory=lambda: Bounds(min=0.0, max=1.0))
    fire_danger: Bounds | None = Field(default_factory=lambda: Bounds(min=1.0, max=5.0))

    def of(self, quantity: str) -> Bounds | None:
        return getattr(self, quantity, None) if quantity in type(self).model_fields else None


class EquipmentThresholds(_Strict):
    """Equipment faults go to maintainers: silence, stuck values, out-of-range values."""

    silence_factor: float = Field(default=3.0, gt=1)  # silent for this many expected intervals
    min_silence_s: float = Field(default=300.0, ge=0)
    # a value unchanged this long is stuck (per quantity; rain counters legitimately stand still)
    stuck_after_s: dict[str, float] = Field(default_factory=lambda: {"level_m": 12 * 3600.0})
    level: Level = Level.YELLOW  # silence or a gateway offline
    fault_level: Level = Level.BLUE  # stuck / out of range / comm error
    loss_level: Level = Level.YELLOW  # a component had to drop readings (full outbox, spool or disk)
    loss_quiet_s: float = Field(default=3600.0, ge=0)  # lifted once no more were dropped for this long
    mechanics: Mechanics = Field(default_factory=lambda: Mechanics(clear_after_s=0.0))

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "ranges" in data:
            raise ValueError("ranges moved to rules.plausible (per quantity: {min, max}); a site overrides it "
                             "under thresholds.plausible")
        return data


class SiteThresholds(_Strict):
    """Per-site overrides of the rule packs' defaults: only the fields given here replace the defaults."""

    rain: RainThresholds | None = None
    torrent: TorrentThresholds | None = None
    reservoir: ReservoirThresholds | None = None
    river: RiverThresholds | None = None
    landslide: LandslideThresholds | None = None
    fire: FireThresholds | None = None
    equipment: EquipmentThresholds | None = None
    plausible: PlausibleThresholds | None = None


class Partition(_Strict):
    """``rules.partition``: the rules spread over ``count`` processes by gateway (see rules/partition.py)."""

    count: int = Field(default=1, ge=1, le=64)
    index: int | None = Field(default=None, ge=0)  # None: `yujing rules` starts and supervises all ``count``

    @model_validator(mode="after")
    def _in_range(self) -> Partition:
        if self.index is not None and self.index >= self.count:
            raise ValueError(f"index {self.index} is not below count {self.count}")
        return self


class RulesConfig(_Strict):
    rain: RainThresholds = Field(default_factory=RainThresholds)
    torrent: TorrentThresholds = Field(default_factory=TorrentThresholds)
    reservoir: ReservoirThresholds = Field(default_factory=ReservoirThresholds)
    river: RiverThresholds = Field(default_factory=RiverThresholds)
    landslide: LandslideThresholds = Field(default_factory=LandslideThresholds)
    fire: FireThresholds = Field(default_factory=FireThresholds)
    equipment: EquipmentThresholds = Field(default_factory=EquipmentThresholds)
    plausible: PlausibleThresholds = Field(default_factory=PlausibleThresholds)
    state: str = ""  # default: <data_dir>/rules.state.sqlite
    tick_s: float = Field(default=10.0, gt=0)  # scenario seconds between time-driven evaluations
    state_flush_s: float = Field(default=10.0, ge=0)  # real seconds between writes of evaluation state
    retain: bool = True  # publish warnings retained: the latest message per site and hazard
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)  # /metrics and /health
    partition: Partition = Field(default_factory=Partition)  # several processes, by gateway (rules/partition.py)


M = TypeVar("M", bound=BaseModel)


def effective(default: M, override: M | None) -> M:
    """``default`` with the fields ``override`` set explicitly (in YAML) replaced; validated again."""
    if override is None:
        return default
    merged: dict[str, Any] = default.model_dump()
    for name, value in override.model_dump(exclude_unset=True).items():
        if isinstance(getattr(default, name), BaseModel) and isinstance(value, dict):
            merged[name] = {**merged[name], **value}  # e.g. mechanics: {clear_after_s: 600} keeps for_s
        else:
            merged[name] = value
    return type(default).model_validate(merged)


class Resolver:
    """Effective thresholds per (pack section, site), computed once: ``resolver.get("rain", "RG-1")``."""

    def __init__(self, rules: RulesConfig, sites: dict[str, Any]) -> None:
        self.rules = rules
        self.sites = sites  # site id -> Site
        self._cache: dict[tuple[str, str], Any] = {}

    def get(self, section: str, site: str) -> Any:
        got = self._cache.get((section, site))
        if got is None:
            s = self.sites.get(site)
            over = getattr(s.thresholds, section) if s is not None else None
            got = self._cache[(section, site)] = effective(getattr(self.rules, section), over)
        return got
