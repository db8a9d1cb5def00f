"""Read one CAP 1.2 document safely: size, encoding, hostile XML, signature, schema — then typed fields.

    doc = read(raw, max_bytes=256 * 1024, certificate=pem_or_None)   # raises Refusal(reason, detail)

Order matters: the size first; then defusedxml parses with DTDs, entities and external references forbidden
(a billion-laughs or XXE document never reaches a parser that would expand it); only then the XML signature
(signxml, against the source's certificate) and the OASIS schema (xmlschema, the XSD shipped here).
A document in GBK/GB2312/GB18030 (as some Chinese platforms still send) is decoded by Python's codecs and
parsed as UTF-8: expat knows no multi-byte legacy encoding.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

NS = "urn:oasis:names:tc:emergency:cap:1.2"
XSD = Path(__file__).with_name("CAP-v1.2.xsd")
_Q = f"{{{NS}}}"


class Reason(enum.StrEnum):
    """Why a document was refused: one label per cause, for the counter and the dead-letter store."""

    OVERSIZED = "oversized"
    ENTITIES = "entities"  # a DTD, entity declarations, external references: refused unexpanded
    MALFORMED = "malformed"
    ENCODING = "encoding"
    SCHEMA = "schema"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad-signature"
    UNAUTHENTICATED = "unauthenticated"
    UNKNOWN_SOURCE = "unknown-source"  # POSTed to /cap/<id> for an id no source has
    UNKNOWN_SENDER = "unknown-sender"
    EXPIRED = "expired"
    UNKNOWN_AREA = "unknown-area"
    NOT_PERMITTED = "not-permitted"  # the source may not address that area
    UNMAPPED_EVENT = "unmapped-event"
    UNMAPPED_LEVEL = "unmapped-level"
    UNKNOWN_REFERENCE = "unknown-reference"  # an Update/Cancel of nothing we know


class Refusal(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail[:500]


@dataclass(frozen=True)
class CapArea:
    desc: str
    polygons: list[list[tuple[float, float]]] = field(default_factory=list)
    circles: list[tuple[float, float, float]] = field(default_factory=list)  # lat, lon, radius km
    geocodes: list[tuple[str, str]] = field(default_factory=list)  # (valueName, value)


@dataclass(frozen=True)
class CapInfo:
    language: str
    category: list[str]
    event: str
    event_codes: list[tuple[str, str]]
    urgency: str
    severity: str
    certainty: str
    expires: datetime | None
    sender_name: str
    headline: str
    description: str
    instruction: str
    areas: list[CapArea]


@dataclass(frozen=True)
class CapAlert:
    identifier: str
    sender: str
    sent: datetime
    status: str  # Actual | Exercise | System | Test | Draft
    msg_type: str  # Alert | Update | Cancel | Ack | Error
    scope: str
    references: list[tuple[str, str, str]]  # (sender, identifier, sent)
    infos: list[CapInfo]
    signed: bool

    def info(self) -> CapInfo | None:
        """The Chinese <info> if there is one (what people here read), else the first."""
        return next((i for i in self.infos if i.language.lower().startswith("zh")), self.infos[0] if self.infos else None)


_DECL = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9_.\-]+)[\"'][^>]*\?>", re.S)
_NATIVE = {"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "utf-16"}


def _to_utf8(raw: bytes) -> bytes:
    """A document declared in a legacy multi-byte encoding, re-encoded as UTF-8 with its declaration to match."""
    m = _DECL.match(raw)
    if m is None or m.group(1).decode().lower() in _NATIVE:
        return raw
    name = m.group(1).decode().lower()
    codec = "gb18030" if name in ("gbk", "gb2312", "gb18030", "cp936") else name
    try:
        text = raw.decode(codec)
    except (LookupError, UnicodeDecodeError) as exc:
        raise Refusal(Reason.ENCODING, f"declared {name}: {exc}") from None
    body = text[m.end():]
    return b'<?xml version="1.0" encoding="UTF-8"?>' + body.encode("utf-8")


@cache
def schema():  # type: ignore[no-untyped-def]
    import xmlschema

    return xmlschema.XMLSchema(str(XSD))


def read(raw: bytes, *, max_bytes: int = 256 * 1024, certificate: str | None = None) -> CapAlert:
    if len(raw) > max_bytes:
        raise Refusal(Reason.OVERSIZED, f"{len(raw)} bytes; at most {max_bytes}")
    raw = _to_utf8(raw)
    try:
        root = SafeET.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise Refusal(Reason.ENTITIES, f"{type(exc).__name__}: DTDs and entities are refused") from None
    except SafeET.ParseError as exc:
        raise Refusal(Reason.MALFORMED, str(exc)) from None
    signed = root.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is not None
    if certificate is not None:
        _verify(raw, certificate, signed)
    errors = list(schema().iter_errors(root))
    if errors:
        e = errors[0]
        raise Refusal(Reason.SCHEMA, f"{e.path or ''}: {e.reason or e.message}"[:300] +
                      (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))
    return _fields(root, signed)


def _verify(raw: bytes, certificate: str, signed: bool) -> None:
    if not signed:
        raise Refusal(Reason.UNSIGNED, "this source's documents must carry an XML signature")
    from signxml import XMLVerifier
    from signxml.exceptions import InvalidInput, InvalidSignature

    try:  # signxml parses with its own hardened lxml parser (no entities, no network)
        XMLVerifier().verify(raw, x509_cert=certificate)
    except (InvalidSignature, InvalidInput) as exc:
        raise Refusal(Reason.BAD_SIGNATURE, str(exc)[:200]) from None


def _t(el: Element, tag: str) -> str:
    return (el.findtext(_Q + tag) or "").strip()


def _time(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _pairs(el: Element, tag: str) -> list[tuple[str, str]]:
    return [(_t(p, "valueName"), _t(p, "value")) for p in el.findall(_Q + tag)]


def _points(text: str) -> list[tuple[float, float]]:
    out = []
    for pair in text.split():
        lat, lon = pair.split(",")
        out.append((float(lat), float(lon)))
    return out


def _circle(text: str) -> tuple[float, float, float]:
    centre, radius = text.split()
    lat, lon = centre.split(",")
    return float(lat), float(lon), float(radius)


def _fields(root: Element, signed: bool) -> CapAlert:
    try:
        infos = []
        for i in root.findall(_Q + "info"):
            areas = [CapArea(_t(a, "areaDesc"), [_points(p.text or "") for p in a.findall(_Q + "polygon")],
                             [_circle(c.text or "") for c in a.findall(_Q + "circle")], _pairs(a, "geocode"))
                     for a in i.findall(_Q + "area")]
            infos.append(CapInfo(
                language=_t(i, "language") or "en-US", category=[c.text or "" for c in i.findall(_Q + "category")],
                event=_t(i, "event"), event_codes=_pairs(i, "eventCode"), urgency=_t(i, "urgency"),
                severity=_t(i, "severity"), certainty=_t(i, "certainty"), expires=_time(_t(i, "expires")),
                sender_name=_t(i, "senderName"), headline=_t(i, "headline"), description=_t(i, "description"),
                instruction=_t(i, "instruction"), areas=areas))
        refs = []
        for r in _t(root, "references").split():
            parts = r.split(",")
            if len(parts) == 3:
                refs.append((parts[0], parts[1], parts[2]))
        sent = _time(_t(root, "sent"))
        assert sent is not None
        return CapAlert(identifier=_t(root, "identifier"), sender=_t(root, "sender"), sent=sent,
                        status=_t(root, "status"), msg_type=_t(root, "msgType"), scope=_t(root, "scope"),
                        references=refs, infos=infos, signed=signed)
    except (ValueError, AssertionError) as exc:  # a polygon or circle the schema's patterns let through
        raise Refusal(Reason.SCHEMA, f"cannot read: {exc}") from None
