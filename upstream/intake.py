"""One CAP document from one source, onto the chain: read, check, map, then issue/update/lift — or refuse.

    intake = Intake(config, issuer, deadletter, now)
    outcome = intake.receive(raw, source, route="post")   # Outcome(status, keys) or raises Refusal

Everything is checked and mapped before anything changes, and all of a document's warnings are written in
one transaction (the issuer's batch): a document is applied whole or not at all. Each refusal is counted by
reason, logged once per (source, reason) a minute, and kept in the dead-letter store with its bytes
(upstream/deadletter.py).
``Exercise`` and ``Test`` become drill warnings (drill recipients only, 【演练】); ``System`` and ``Draft`` are
logged and nothing is sent. A document seen before (its identifier) changes nothing.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import Counter

from duty.issuer import Issue, Issuer
from upstream.cap import CapAlert, Reason, Refusal, read
from upstream.config import Source
from upstream.deadletter import DeadLetters
from upstream.mapping import areas_of, hazard_of, level_of, permitted
from yujing.log import Limiter
from yujing.model import HazardWarning, WarningState

if TYPE_CHECKING:
    from yujing.compose import Config  # the composed deployment (top floor); a type only

log = logging.getLogger("yujing.upstream")
REFUSED = Counter("yujing_upstream_refused_total", "CAP documents refused, by reason", ["source", "reason"])
ACCEPTED = Counter("yujing_upstream_documents_total", "CAP documents taken, by what came of them",
                   ["source", "status"])
_limiter = Limiter(60.0)


class Status(enum.StrEnum):
    ISSUED = "issued"
    UPDATED = "updated"
    CANCELLED = "cancelled"
    DUPLICATE = "duplicate"  # seen before: nothing changed
    IGNORED = "ignored"  # System / Draft / Ack / Error: logged, not sent


@dataclass
class Outcome:
    status: Status
    warnings: list[HazardWarning] = field(default_factory=list)
    note: str = ""


class Intake:
    def __init__(self, config: Config, issuer: Issuer, deadletters: DeadLetters, now: Callable[[], datetime],
                 certificates: dict[str, str] | None = None) -> None:
        self.config = config
        self.issuer = issuer
        self.deadletters = deadletters
        self.now = now
        self.certificates = certificates if certificates is not None else _certificates(config)

    def refuse(self, source: str, route: str, refusal: Refusal, raw: bytes) -> None:
        REFUSED.labels(source=source, reason=refusal.reason.value).inc()
        if _limiter.allow((source, refusal.reason)):
            log.warning("CAP document refused", extra={"kv": {"source": source, "route": route,
                                                              "reason": refusal.reason.value,
                                                              "detail": refusal.detail[:200], "bytes": len(raw)}})
        self.deadletters.add(self.now(), source, route, refusal, raw)

    def receive(self, raw: bytes, source: Source, route: str) -> Outcome:
        """Apply ``raw`` or raise :class:`Refusal` (already counted, logged and dead-lettered)."""
        try:
            outcome = self._apply(raw, source)
        except Refusal as refusal:
            self.refuse(source.id, route, refusal, raw)
            raise
        ACCEPTED.labels(source=source.id, status=outcome.status.value).inc()
        log.info("CAP document taken", extra={"kv": {"source": source.id, "route": route,
                                                     "status": outcome.status.value,
                                                     "warnings": [w.id for w in outcome.warnings]}})
        return outcome

    def _apply(self, raw: bytes, source: Source) -> Outcome:
        doc = read(raw, max_bytes=self.config.upstream.max_bytes, certificate=self.certificates.get(source.id))
        if doc.sender != source.sender:
            raise Refusal(Reason.UNKNOWN_SENDER, f"sender {doc.sender!r} is not this source's ({source.sender!r})")
        ref = f"cap:{doc.sender}:{doc.identifier}"
        if self.issuer.has_ref(ref):
            return Outcome(Status.DUPLICATE, note="this identifier was taken before")
        if doc.status in ("System", "Draft") or doc.msg_type in ("Ack", "Error"):
            with self.issuer.batch():
                self.issuer.add_ref(ref, "")
            return Outcome(Status.IGNORED, note=f"status {doc.status}, msgType {doc.msg_type}: not sent")
        drill = doc.status in ("Exercise", "Test")
        # only its own sender's documents: one platform can never update or cancel another's warnings
        earlier = [k for s, ident, _ in doc.references if s == doc.sender
                   for k in self.issuer.keys_by_ref_prefix(f"cap:{s}:{ident}:") if k]
        if doc.msg_type == "Cancel":
            if not earlier:
                raise Refusal(Reason.UNKNOWN_REFERENCE, "a Cancel of no document taken here")
            with self.issuer.batch():
                lifted = [self.issuer.lift(k, ref=f"{ref}:{k}", why="上级解除")[0] for k in dict.fromkeys(earlier)]
                self.issuer.add_ref(ref, "")
            return Outcome(Status.CANCELLED, lifted)
        return self._alert_or_update(doc, source, ref, drill, list(dict.fromkeys(earlier)))

    def _alert_or_update(self, doc: CapAlert, source: Source, ref: str, drill: bool, earlier: list[str]) -> Outcome:
        info = doc.info()
        if info is None:
            raise Refusal(Reason.SCHEMA, "no <info>: nothing to tell anyone")
        now = self.now()
        if info.expires is not None and info.expires <= now:
            raise Refusal(Reason.EXPIRED, f"expired at {info.expires.isoformat()}")
        hazard, level = hazard_of(info, self.config.upstream.events), level_of(info)
        areas = areas_of(info, self.config)
        barred = [a.id for a in areas if not permitted(a, source.may_address, self.config)]
        if barred:
            raise Refusal(Reason.NOT_PERMITTED, f"this source may not address {', '.join(barred)}")
        # a warning carries at most what an SMS can (the renderer cuts further); a platform may send pages
        sender_name = _cut(info.sender_name or source.authority, 200)
        text = _cut(info.instruction or info.description, 2000)
        headline = _cut(info.headline, 200)
        with self.issuer.batch():
            out = []
            if doc.msg_type == "Update" and earlier:
                # an Update replaces what its references said: the areas still named are updated, new ones
                # issued, and those it no longer names lifted
                by_area = {w.area: w for k in earlier
                           if (w := self.issuer.get(k)) is not None and w.state is not WarningState.LIFTED}
                wanted = {a.id for a in areas}
                for area_id, w in by_area.items():
                    if area_id in wanted:
                        out.append(self.issuer.update(w.key, level=level, instruction=text, headline=headline,
                                                      expires=info.expires, ref=f"{ref}:{w.key}")[0])
                    else:
                        out.append(self.issuer.lift(w.key, ref=f"{ref}:{w.key}", why="上级更新不再包含")[0])
                areas = [a for a in areas if a.id not in by_area]
            for area in areas:
                w, _ = self.issuer.issue(Issue(
                    hazard=hazard, level=level, source=f"cap:{doc.sender}", area=area.id, title=info.event,
                    instruction=text, headline=headline, sender_name=sender_name, expires=info.expires,
                    drill=drill, ref=f"{ref}:{area.id}"))
                out.append(w)
            self.issuer.add_ref(ref, "")
        if doc.msg_type == "Update" and earlier:
            return Outcome(Status.UPDATED, out)
        return Outcome(Status.ISSUED, out)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def _certificates(config: Config) -> dict[str, str]:
    out = {}
    for s in config.upstream.sources:
        if s.certificate is not None:
            out[s.id] = config.path(str(s.certificate), "").read_text(encoding="ascii")
    return out
