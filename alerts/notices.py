"""What a warning becomes for its recipients: the words (rendered once per channel and language) and the
notifications that carry them, one per recipient and channel. A drill's notifications reach only its own people,
whatever asked for them (a lift, an escalation, a bug): the last guard.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from prometheus_client import Counter

from alerts.directory import Directory
from alerts.nflog import Notification
from alerts.render import Renderer
from alerts.route import Recipient
from yujing.config.people import Channel, Person
from yujing.model import HazardWarning, WarningState

log = logging.getLogger("yujing.alerts")
PROBLEMS = Counter("yujing_alerts_routing_problems_total", "Warnings that could not be fully routed", ["reason"])

_VALUE = {c: c.value for c in Channel}
Texts = dict[tuple[bool, str, str], tuple[str, str]]  # (ack, channel, language) → (full text, template JSON)


@dataclass
class Notices:
    renderer: Renderer
    directory: Directory
    templated: bool  # some provider sends approved templates only: keep each notification's template too
    drill: bool = False
    drill_people: list[Person] = field(default_factory=list)
    _allowed: frozenset[str] | None = None

    def text(self, w: HazardWarning, ack: bool = False, channel: str = "sms", language: str = "zh") -> str:
        return self.rendered(w, ack, channel, language)[0]

    def rendered(self, w: HazardWarning, ack: bool = False, channel: str = "sms",
                 language: str = "zh") -> tuple[str, str]:
        """(full text, template JSON {name, params}): the one definition, for both kinds of provider."""
        site = self.directory.site(w.site) if w.site else None
        area = w.area or (site.area if site else "")
        lineage = [(a.tier, a.name) for a in self.directory.config.lineage(area)] if self.directory.area(area) else []
        body, name, params = self.renderer.render(w, site.name if site else w.site, lineage, ack=ack,
                                                  channel=channel, language=language)
        if not self.templated:  # only full-text providers: nothing else to keep per notification
            return body, ""
        return body, json.dumps({"name": name, "params": params}, ensure_ascii=False)

    def items(self, w: HazardWarning, recipients: list[Recipient], attempt: int, escalation: bool = False,
              texts: Texts | None = None) -> list[Notification]:
        """The notifications that tell ``recipients`` about ``w``: one per channel, each text rendered once
        (``texts`` carries the rendered ones across the chunks of one fan-out)."""
        lift = w.state is WarningState.LIFTED
        texts = {} if texts is None else texts
        if self.drill:  # whatever asked (a lift, an escalation, a bug), a drill reaches only its own people
            allowed = self._drill_phones()
            refused = [r for r in recipients if r.phone not in allowed]
            if refused:
                PROBLEMS.labels(reason="drill-non-participant").inc()
                log.error("a drill notification to someone not taking part was refused",
                          extra={"kv": {"warning": w.id, "phones": len(refused)}})
                recipients = [r for r in recipients if r.phone in allowed]
        priority_base = w.level.severity * 10 + (20 if escalation else 0)
        out = []
        for r in recipients:
            ack = r.ack and not lift
            for channel in r.channels:
                ch = _VALUE[channel]  # Enum.value is slow, and this runs 10,000 times for a red
                lang = r.person.language
                done = texts.get((ack, ch, lang))
                if done is None:
                    done = texts[(ack, ch, lang)] = self.rendered(w, ack, ch, lang)
                body, template = done
                out.append(Notification(
                    key=Notification.make_key(w.id, r.phone, ch, attempt), warning_id=w.id,
                    warning_key=w.key, phone=r.phone, channel=channel, attempt=attempt,
                    priority=priority_base + (5 if ack else 0), body=body, ack=ack, node=r.node, tier=r.tier,
                    name=r.person.name, reason=r.reason, template=template))
        return out

    def _drill_phones(self) -> frozenset[str]:
        if self._allowed is None:
            self._allowed = frozenset(p.phone for p in self.drill_people)
        return self._allowed
