"""OASIS CAP 1.2: every warning that is sent is also published as a CAP document (MQTT and HTTP).

``status`` is Actual, or Exercise for drills; ``msgType`` Alert (issued), Update (upgraded,
downgraded; referencing the previous version), Cancel (lifted).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime

from yujing.model import Hazard, HazardWarning, Level, WarningState

NS = "urn:oasis:names:tc:emergency:cap:1.2"
SENDER = "yujing@localhost"  # the default of alerts.cap.sender; a deployment names its own

# XML 1.0 cannot carry C0 controls but TAB, LF, CR (not even as character references), nor U+FFFE/U+FFFF or
# lone surrogates: ElementTree writes them as they are, and the document is not well-formed. They never mean
# anything in a warning's words; each becomes U+FFFD, so a reader sees that something was there.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)

_SEVERITY = {Level.RED: "Extreme", Level.ORANGE: "Severe", Level.YELLOW: "Moderate", Level.BLUE: "Minor"}
_URGENCY = {Level.RED: "Immediate", Level.ORANGE: "Immediate", Level.YELLOW: "Expected", Level.BLUE: "Future"}
_CATEGORY = {Hazard.RAINSTORM: "Met", Hazard.TORRENT: "Geo", Hazard.RESERVOIR: "Infra", Hazard.RIVER: "Met",
             Hazard.LANDSLIDE: "Geo", Hazard.FIRE: "Fire", Hazard.EQUIPMENT: "Infra", Hazard.OTHER: "Other"}


def thread(w: HazardWarning) -> str:
    """The CAP thread (and topic level) ``w`` belongs to: its site, as warnings are grouped; a warning from
    above is a thread of its own (``@area:<rest of its key>``)."""
    if not w.from_above:
        return w.site
    return w.key.split(":", 1)[-1].translate(_NOT_IN_A_LEVEL)


_NOT_IN_A_LEVEL = str.maketrans({"/": "_", "+": "_", "#": "_"})


def identifier(w: HazardWarning) -> str:
    return f"{'drill.' if w.drill else ''}yujing.{w.key}.{w.version}".replace("#", ".").replace(" ", "_")


def _ts(t: datetime) -> str:
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "-00:00")


def build(w: HazardWarning, text: str, area_desc: str, previous: HazardWarning | None = None,
          sender: str = SENDER, lat: float | None = None, lon: float | None = None, sender_name: str = "",
          area_code: str | None = None) -> str:
    """The CAP 1.2 document of ``w`` as sent with ``text``. ``sender``/``sender_name`` are the deployment's
    (``alerts.cap``); a warning from above keeps its issuer's name, headline, instruction and expiry."""
    ET.register_namespace("", NS)
    def q(tag: str) -> str:
        return f"{{{NS}}}{tag}"

    alert = ET.Element(q("alert"))

    def sub(parent: ET.Element, tag: str, value: str) -> ET.Element:
        el = ET.SubElement(parent, q(tag))
        el.text = xml_text(value)
        return el

    sub(alert, "identifier", identifier(w))
    sub(alert, "sender", sender)
    sub(alert, "sent", _ts(w.updated_at))
    sub(alert, "status", "Exercise" if w.drill else "Actual")
    msg_type = {WarningState.ISSUED: "Alert", WarningState.LIFTED: "Cancel"}.get(w.state, "Update")
    if msg_type == "Update" and previous is None:
        msg_type = "Alert"  # nothing to update: the first message we send about it
    sub(alert, "msgType", msg_type)
    sub(alert, "scope", "Public")
    if w.drill:
        sub(alert, "note", "演练 (drill)")
    if previous is not None and msg_type != "Alert":
        sub(alert, "references", f"{sender},{identifier(previous)},{_ts(previous.updated_at)}")
    info = ET.SubElement(alert, q("info"))
    sub(info, "language", "zh-CN")
    sub(info, "category", _CATEGORY.get(w.hazard, "Other"))
    sub(info, "event", f"{w.hazard.chinese}{w.level.chinese}预警")
    sub(info, "responseType", "Evacuate" if w.level is Level.RED and w.hazard is not Hazard.EQUIPMENT else
        ("AllClear" if w.state is WarningState.LIFTED else "Monitor"))
    sub(info, "urgency", "Past" if w.state is WarningState.LIFTED else _URGENCY[w.level])
    sub(info, "severity", _SEVERITY[w.level])
    sub(info, "certainty", "Observed")
    ec = ET.SubElement(info, q("eventCode"))
    sub(ec, "valueName", "GB/T-level")
    sub(ec, "value", w.level.roman)
    if w.expires is not None:
        sub(info, "expires", _ts(w.expires))
    sub(info, "senderName", w.sender_name or sender_name or sender)
    sub(info, "headline", w.headline or f"{w.hazard.chinese}{w.level.chinese}预警{w.state.chinese}")
    sub(info, "description", text)
    if w.instruction:
        sub(info, "instruction", w.instruction)
    for k, v in sorted(w.values.items()):
        p = ET.SubElement(info, q("parameter"))
        sub(p, "valueName", k)
        sub(p, "value", f"{v:g}")
    area = ET.SubElement(info, q("area"))
    sub(area, "areaDesc", area_desc or w.site)
    if lat is not None and lon is not None:
        sub(area, "circle", f"{lat},{lon} 1.0")
    geo = ET.SubElement(area, q("geocode"))
    sub(geo, "valueName", "yujing-area")
    sub(geo, "value", w.area or w.site)
    if area_code:  # the division code (GB/T 2260 and its village extensions), as upper platforms address areas
        geo = ET.SubElement(area, q("geocode"))
        sub(geo, "valueName", "GB/T 2260")
        sub(geo, "value", area_code)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(alert, encoding="unicode")


@dataclass
class CapBook:
    """The latest CAP document per (hazard, site), and all by identifier, for the HTTP endpoint."""

    latest: dict[tuple[str, str], str] = field(default_factory=dict)
    by_id: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def add(self, hazard: str, site: str, ident: str, xml: str) -> None:
        self.latest[(hazard, site)] = xml
        if ident not in self.by_id:
            self.order.append(ident)
        self.by_id[ident] = xml
