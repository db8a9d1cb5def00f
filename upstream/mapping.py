"""A CAP <info> onto Yujing's terms: which hazard, which of the four levels, which nodes of the tree. Pure.

Hazard: the first rule whose ``match`` is in the <event>, an <eventCode> value or the <headline> — the
deployment's rules (``upstream.events``) first, then the defaults below, which know the Chinese signal names
(暴雨…预警, 地质灾害气象风险预警, 山洪灾害气象预警, 森林火险…) and send other known warnings (雷电, 大风,
寒潮…) as the generic ``other``, which still routes. Level: the colour named in the event or headline
(蓝/黄/橙/红, Blue…Red, Ⅳ…Ⅰ级), else <severity>. Area: a <geocode> that is a division code (6/9/12 digits;
trailing zero groups dropped, so 500233009000 is the township 500233009) of a node; else the villages that a
<polygon> or <circle> covers (its centre, or one of its sites, inside), a township or county whose every
village is covered standing in for them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from upstream.cap import CapArea, CapInfo, Reason, Refusal
from upstream.config import EventRule
from yujing.config.areas import Area, Tier
from yujing.model import Hazard, Level

if TYPE_CHECKING:
    from yujing.compose import Config  # the composed deployment (top floor); a type only

DEFAULT_EVENTS: list[tuple[str, Hazard]] = [
    ("地质灾害", Hazard.LANDSLIDE), ("滑坡", Hazard.LANDSLIDE), ("泥石流", Hazard.LANDSLIDE),
    ("崩塌", Hazard.LANDSLIDE), ("山洪", Hazard.TORRENT), ("暴雨", Hazard.RAINSTORM),
    ("水库", Hazard.RESERVOIR), ("洪水", Hazard.RIVER), ("洪涝", Hazard.RIVER), ("河道", Hazard.RIVER),
    ("森林火", Hazard.FIRE), ("火险", Hazard.FIRE),
    ("Landslide", Hazard.LANDSLIDE), ("Debris Flow", Hazard.LANDSLIDE), ("Flash Flood", Hazard.TORRENT),
    ("Flood", Hazard.RIVER), ("Heavy Rain", Hazard.RAINSTORM), ("Rainstorm", Hazard.RAINSTORM),
    ("Fire", Hazard.FIRE),
    # known warnings of no hazard of ours: still told down the chain
    *[(w, Hazard.OTHER) for w in ("雷电", "雷雨大风", "大风", "冰雹", "寒潮", "高温", "大雾", "道路结冰", "台风",
                                  "干旱", "霜冻", "暴雪", "沙尘暴", "霾", "地震", "转移", "Thunder",
                                  "Earthquake", "Typhoon", "Wind", "Hail", "Heat", "Cold", "Fog", "Snow")],
]
_COLOURS = [(Level.RED, ("红色", "Red", "RED", "Ⅰ级", "I级")), (Level.ORANGE, ("橙色", "Orange", "ORANGE", "Ⅱ级", "II级")),
            (Level.YELLOW, ("黄色", "Yellow", "YELLOW", "Ⅲ级", "III级")), (Level.BLUE, ("蓝色", "Blue", "BLUE", "Ⅳ级", "IV级"))]
_SEVERITY = {"Extreme": Level.RED, "Severe": Level.ORANGE, "Moderate": Level.YELLOW, "Minor": Level.BLUE}


def hazard_of(info: CapInfo, rules: list[EventRule]) -> Hazard:
    texts = [info.event, *(v for _, v in info.event_codes), info.headline]
    for match, hazard in [(r.match, r.hazard) for r in rules] + DEFAULT_EVENTS:
        if any(match.lower() in t.lower() for t in texts if t):
            return hazard
    raise Refusal(Reason.UNMAPPED_EVENT, f"event {info.event!r} matches no hazard (upstream.events)")


def level_of(info: CapInfo) -> Level:
    for text in (info.event, info.headline):
        for level, words in _COLOURS:
            if any(w in text for w in words):
                return level
    level = _SEVERITY.get(info.severity)
    if level is None:
        raise Refusal(Reason.UNMAPPED_LEVEL, f"no colour in event/headline and severity {info.severity!r}")
    return level


def normalise_code(value: str) -> str | None:
    """A division code as the tree keeps it: 12 → 9 → 6 digits while the tail is zeros."""
    v = value.strip()
    if not re.fullmatch(r"[0-9]{6}|[0-9]{9}|[0-9]{12}", v):
        return None
    if len(v) == 12 and v.endswith("000"):
        v = v[:9]
    if len(v) == 9 and v.endswith("000"):
        v = v[:6]
    return v


def inside(lat: float, lon: float, polygon: list[tuple[float, float]]) -> bool:
    """Ray casting on (lat, lon) pairs: enough at county scale, where the earth is flat."""
    hit = False
    n = len(polygon)
    for i in range(n):
        (y1, x1), (y2, x2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > lat) != (y2 > lat) and lon < (x2 - x1) * (lat - y1) / (y2 - y1) + x1:
            hit = not hit
    return hit


def within_km(lat: float, lon: float, circle: tuple[float, float, float]) -> bool:
    clat, clon, r = circle
    p1, p2 = math.radians(lat), math.radians(clat)
    d = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(clon - lon) / 2) ** 2)
    return 2 * 6371.0 * math.asin(math.sqrt(d)) <= r


def areas_of(info: CapInfo, config: Config) -> list[Area]:
    """The nodes the <info> addresses, fewest that cover it; refused if it addresses nothing here."""
    by_code = {a.code: a for a in config.areas if a.code}
    found: dict[str, Area] = {}
    for area in info.areas:
        for _, value in area.geocodes:
            code = normalise_code(value)
            if code is not None and code in by_code:
                found[by_code[code].id] = by_code[code]
    if not found:
        for a in _villages_covered(info.areas, config):
            found[a.id] = a
        found = {a.id: a for a in _collapse(list(found.values()), config)}
    if not found:
        desc = "; ".join(a.desc for a in info.areas)[:120]
        raise Refusal(Reason.UNKNOWN_AREA, f"no geocode, polygon or circle matches a node of the tree ({desc})")
    # a node under another addressed node adds nobody: keep the one above
    ids = set(found)
    return [a for a in found.values() if not any(p.id in ids for p in config.lineage(a.id)[1:])]


def _points_of(village: Area, config: Config) -> Iterable[tuple[float, float]]:
    if village.lat is not None and village.lon is not None:
        yield village.lat, village.lon
    under = {village.id} | {g.id for g in config.children(village.id)}
    for s in config.sites:
        if s.area in under and s.lat is not None and s.lon is not None:
            yield s.lat, s.lon


def _villages_covered(areas: list[CapArea], config: Config) -> list[Area]:
    shapes = [a for a in areas if a.polygons or a.circles]
    if not shapes:
        return []
    out = []
    for v in (a for a in config.areas if a.tier is Tier.VILLAGE):
        for lat, lon in _points_of(v, config):
            if any(inside(lat, lon, p) for s in shapes for p in s.polygons) or \
                    any(within_km(lat, lon, c) for s in shapes for c in s.circles):
                out.append(v)
                break
    return out


def _collapse(nodes: list[Area], config: Config) -> list[Area]:
    """Replace the children of a parent by the parent when every child is there, up the tree."""
    current = {a.id: a for a in nodes}
    changed = True
    while changed:
        changed = False
        parents = {a.parent for a in current.values() if a.parent}
        for pid in parents:
            kids = [c for c in config.children(pid) if c.tier in (Tier.VILLAGE, Tier.TOWNSHIP, Tier.COUNTY)]
            if kids and all(k.id in current for k in kids):
                for k in kids:
                    del current[k.id]
                current[pid] = config.area(pid)
                changed = True
                break
    return list(current.values())


def permitted(area: Area, may_address: list[str], config: Config) -> bool:
    return not may_address or any(a.id in may_address for a in config.lineage(area.id))
