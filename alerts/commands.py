"""What the duty office asks of alerts, on the bus (alerts' persistent session keeps them while it is down):

    {prefix}/commands/alerts   Command JSON, QoS 1: confirm on a person's behalf, resend to the unconfirmed
    {prefix}/silences          SilenceList JSON, QoS 1, retained: the duty office's silences, all of them

The notification log stays alerts' alone: nothing else writes to it.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from alerts.config import Silence
from alerts.nflog import Notification
from alerts.pipeline import Pipeline
from yujing.model import WarningState

log = logging.getLogger("yujing.alerts")


class Action(enum.StrEnum):
    CONFIRM = "confirm"
    RESEND = "resend"


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action
    key: str = Field(min_length=1)  # the warning key
    by: str = Field(min_length=1)  # the duty officer who entered it (operator:<user>)
    phone: str = ""  # confirm: whose confirmation
    via: str = "landline"  # confirm: how they confirmed (landline, in person, radio…)
    note: str = Field(default="", max_length=500)
    id: str = ""  # the duty office's request id, for its audit


class SilenceList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    silences: list[Silence] = Field(default_factory=list)


RESEND_ATTEMPT = 1000  # resends number their notifications from here: never an escalation step's attempt


def apply(pipelines: dict[str, Pipeline], cmd: Command, now: datetime) -> dict[str, Any]:
    for p in pipelines.values():
        if p.nflog.warnings.latest(cmd.key) is not None:
            return confirm(p, cmd, now) if cmd.action is Action.CONFIRM else resend(p, cmd, now)
    return {"ok": False, "why": "unknown warning"}


def confirm(p: Pipeline, cmd: Command, now: datetime) -> dict[str, Any]:
    """Confirm ``cmd.phone`` for ``cmd.key``, recorded as entered by the duty officer: stops their escalation."""
    asked = [n for n in p.nflog.notifications.awaiting_confirmation(cmd.phone) if n.warning_key == cmd.key]
    if not asked:
        return {"ok": False, "why": "not awaiting confirmation"}
    via = f"{cmd.via} (entered by {cmd.by})"
    done = set()
    for n in asked:
        if n.warning_id not in done:
            p.confirm(n, via)
            p.nflog.timeline.add(now, n.warning_id, n.phone, "confirmed-on-behalf", {"by": cmd.by, "via": cmd.via,
                                                                               "note": cmd.note})
            done.add(n.warning_id)
    return {"ok": True, "confirmed": sorted(done)}


def resend(p: Pipeline, cmd: Command, now: datetime) -> dict[str, Any]:
    """Send the latest version again to everyone asked to confirm it who has not (by SMS and voice as before)."""
    w = p.nflog.warnings.latest(cmd.key)
    if w is None or w.state is WarningState.LIFTED:
        return {"ok": False, "why": "lifted"}
    sent = [n for n in p.nflog.notifications.for_warning(w.id) if n.ack and n.attempt < RESEND_ATTEMPT]
    confirmed = p.nflog.confirmations.of(w.id)
    attempt = RESEND_ATTEMPT + 1 + max((n.attempt - RESEND_ATTEMPT for n in p.nflog.notifications.for_warning(w.id)
                                        if n.attempt > RESEND_ATTEMPT), default=0)
    items: list[Notification] = []
    for n in sent:
        if n.phone in confirmed:
            continue
        items.append(Notification(key=Notification.make_key(w.id, n.phone, n.channel, attempt), warning_id=w.id,
                                  warning_key=w.key, phone=n.phone, channel=n.channel, attempt=attempt,
                                  priority=n.priority, body=n.body, ack=True, node=n.node, tier=n.tier, name=n.name,
                                  reason="resend"))
    fresh = p.nflog.notifications.enqueue(items, now)
    p.nflog.timeline.add(now, w.id, "", "resend", {"by": cmd.by, "notifications": len(fresh)})
    p.dispatcher.submit(p.nflog, fresh)
    return {"ok": True, "notifications": len(fresh)}
