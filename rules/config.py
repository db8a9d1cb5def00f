"""Rule thresholds: national defaults, overridable per site."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RainThresholds(BaseModel):
    """Rolling rainfall accumulations (mm) per colour: CMA Order 16 暴雨预警信号 by default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    blue: dict[int, float] = Field(default_factory=lambda: {12: 50.0})  # window hours -> mm
    yellow: dict[int, float] = Field(default_factory=lambda: {6: 50.0})
    orange: dict[int, float] = Field(default_factory=lambda: {3: 50.0})
    red: dict[int, float] = Field(default_factory=lambda: {3: 100.0})


class SiteThresholds(BaseModel):
    """Per-site overrides of the rule packs' defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rain: RainThresholds | None = None


class RulesConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rain: RainThresholds = Field(default_factory=RainThresholds)
    state: str = ""  # default: <data_dir>/rules.state.sqlite
