"""The administrative tree: 市 → 县 → 乡镇(街道) → 村(居委) → 组 → 户.

Kept flat in YAML (each node names its parent), which is easy to edit,
to generate and to point at with a line number.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

from yujing.config.people import Person


class Tier(enum.StrEnum):
    """A level of the six-level chain; ``depth`` 1 (city) .. 6 (household)."""

    CITY = "city"  # 市
    COUNTY = "county"  # 县
    TOWNSHIP = "township"  # 乡镇(街道)
    VILLAGE = "village"  # 村(居委)
    GROUP = "group"  # 组
    HOUSEHOLD = "household"  # 户

    @property
    def depth(self) -> int:
        return list(Tier).index(self) + 1

    @property
    def chinese(self) -> str:
        return {1: "市", 2: "县", 3: "乡镇(街道)", 4: "村(居委)", 5: "组", 6: "户"}[self.depth]


class Area(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str
    tier: Tier
    parent: str | None = None
    people: list[Person] = Field(default_factory=list)
