"""Monitored sites: a rain station, a reservoir, a hazard point, a forest block."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

from yujing.config.people import Person


class SiteKind(enum.StrEnum):
    RAIN = "rain"  # 雨量站
    RESERVOIR = "reservoir"  # 水库
    RIVER = "river"  # 河道水位站
    LANDSLIDE = "landslide"  # 滑坡/地灾隐患点
    FOREST = "forest"  # 林区(火情监测)


class Site(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str
    kind: SiteKind
    area: str  # the administrative node (village or group) the site belongs to
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    people: list[Person] = Field(default_factory=list)  # the site's monitor 监测员 and responsible person 责任人
    # ``thresholds`` (the rules' section of a site) is added by yujing.compose.Site: rules own its shape
