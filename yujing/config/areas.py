"""The administrative tree: 市 → 县 → 乡镇(街道) → 村(居委) → 组 → 户.

Kept flat in YAML (each node names its parent), which is easy to edit,
to generate and to point at with a line number.
"""

from __future__ import annotations

import enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from yujing.config.people import Person, Role


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
    # the administrative division code (GB/T 2260: 6 digits to the county; the statistical codes' 9-digit
    # township and 12-digit village extensions): how a CAP document's <geocode> names this node
    code: str | None = Field(default=None, pattern=r"^([0-9]{6}|[0-9]{9}|[0-9]{12})$")
    lat: float | None = Field(default=None, ge=-90, le=90)  # a village's centre: CAP <polygon>/<circle> match it
    lon: float | None = Field(default=None, ge=-180, le=180)
    people: list[Person] = Field(default_factory=list)


def load_households(path: str | Path) -> dict[str, list[Person]]:
    """Households (户) from a CSV ``group,id,name,phone[,channels]``, keyed by the group (组) they hang under.

    ``channels`` is optional, ``sms``, ``voice`` or ``sms voice`` (space- or ``|``-separated); left out, a
    household can take both, because a red's 立即转移 calls every household (alerts' default policy) and a
    CSV that forgot the column must not silently drop those calls. Errors name the file and line:
    ``households.csv:12: phone: …``.
    """
    import csv

    from pydantic import ValidationError

    from yujing.errors import ConfigError

    path = Path(path)
    out: dict[str, list[Person]] = {}
    problems: list[str] = []
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ConfigError([f"{path}: {exc.strerror}"]) from None
    with handle:
        reader = csv.DictReader(handle)
        missing = {"group", "name", "phone"} - set(reader.fieldnames or [])
        if missing:
            raise ConfigError([f"{path}:1: missing columns {sorted(missing)}"])
        for row in reader:
            line = reader.line_num
            raw = (row.get("channels") or "sms voice").replace("|", " ").split()
            try:
                person = Person(id=row.get("id") or "", name=row["name"], role=Role.HOUSEHOLD,
                                phone=row["phone"].strip(), channels=raw)
            except ValidationError as exc:
                for err in exc.errors():
                    where = ".".join(str(p) for p in err["loc"])
                    problems.append(f"{path.name}:{line}: {where}: {err['msg']}")
                continue
            out.setdefault(row["group"].strip(), []).append(person)
    if problems:
        raise ConfigError(problems)
    return out
