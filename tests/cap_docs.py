"""CAP 1.2 documents for the Zhong County tests, in the shape China's early-warning release platform (CPEAS)
publishes them (tests/data/cap/cn-cpeas-baoding-thunder-update.xml): a 12-digit geocode, Chinese <info>."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from xml.sax.saxutils import escape

CST = timezone(timedelta(hours=8))
SENDER = "500233_Meteorological_Observatory"


def ts(t: datetime) -> str:
    return t.astimezone(CST).replace(microsecond=0).isoformat()


def document(identifier: str, *, msg_type: str = "Alert", status: str = "Actual", sender: str = SENDER,
             references: list[tuple[str, datetime]] | None = None, event: str = "暴雨",
             headline: str = "忠县气象台发布暴雨橙色预警[Ⅱ级/严重]", severity: str = "Severe",
             instruction: str = "请立即停止户外作业，危险区群众做好转移准备。", geocode: str | None = "500233009000",
             polygon: str | None = None, circle: str | None = None, expires: datetime | None = None,
             sent: datetime | None = None, sender_name: str = "忠县气象台", encoding: str = "UTF-8",
             description: str = "预计未来6小时石宝镇将出现100毫米以上降雨。") -> str:
    sent = sent or datetime.now(CST)
    expires = expires or sent + timedelta(hours=6)
    refs = " ".join(f"{sender},{i},{ts(t)}" for i, t in (references or []))
    area = [f"<areaDesc>{escape('石宝镇')}</areaDesc>"]
    if polygon:
        area.append(f"<polygon>{polygon}</polygon>")
    if circle:
        area.append(f"<circle>{circle}</circle>")
    if geocode:
        area.append(f"<geocode><valueName>CPEAS Geographic Code</valueName><value>{geocode}</value></geocode>")
    return (f'<?xml version="1.0" encoding="{encoding}"?>\n'
            f'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
            f"<identifier>{identifier}</identifier><sender>{sender}</sender><sent>{ts(sent)}</sent>"
            f"<status>{status}</status><msgType>{msg_type}</msgType><scope>Public</scope>"
            + (f"<references>{refs}</references>" if refs else "")
            + f"<info><language>zh-CN</language><category>Met</category><event>{escape(event)}</event>"
            f"<urgency>Immediate</urgency><severity>{severity}</severity><certainty>Likely</certainty>"
            f"<effective>{ts(sent)}</effective><expires>{ts(expires)}</expires>"
            f"<senderName>{escape(sender_name)}</senderName><headline>{escape(headline)}</headline>"
            f"<description>{escape(description)}</description><instruction>{escape(instruction)}</instruction>"
            f"<area>{''.join(area)}</area></info></alert>")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol4;</identifier></alert>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>"""
