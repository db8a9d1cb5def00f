"""What the Twilio stand-in knows: what the person at each number does, and what it was asked to do.

:class:`Behaviour` is one number's far end (delivered or not, a reply, a call answered, a key pressed);
:class:`Record` is one message or call as the stand-in received it, answered as Twilio-shaped JSON;
:class:`Injection` is a failure :meth:`~simulators.twilio.TwilioStandIn.fail_next` was asked to inject.
Plain data with no server in it, so a scenario (``simulators/calls.py``) can build behaviours and read
records without starting anything.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

API = "/2010-04-01/Accounts/{account}"
DEFAULT_TOKEN = "standin-token"  # the auth token the stand-in uses (and lends the demo) when none is given


@dataclass(frozen=True)
class Behaviour:
    """What the person at one number does. Delays are in scenario seconds (see ``clock``)."""

    sms_delivered: bool = True  # False: delivery fails (status 'undelivered', error 30003)
    sms_reply: str | None = None  # text sent back after ``reply_after_s``
    reply_after_s: float = 5.0
    answer: bool = True  # False: the call rings out ('no-answer')
    digits: str | None = None  # key(s) pressed on the <Gather> after ``press_after_s``; None: hangs up
    press_after_s: float = 5.0
    ring_s: float = 3.0  # rings before answering, or before giving up

    @classmethod
    def answers_and_presses(cls, digits: str = "1", after_s: float = 5.0) -> Behaviour:
        return cls(answer=True, digits=digits, press_after_s=after_s)

    @classmethod
    def never_answers(cls) -> Behaviour:
        return cls(answer=False)

    @classmethod
    def replies(cls, text: str = "1", after_s: float = 5.0) -> Behaviour:
        return cls(sms_reply=text, reply_after_s=after_s)

    @classmethod
    def unreachable(cls) -> Behaviour:
        return cls(sms_delivered=False, answer=False)


@dataclass
class Record:
    """One message or call as the stand-in received it, with what happened to it since."""

    sid: str
    kind: str  # 'sms' | 'call'
    to: str
    from_: str
    body: str = ""  # SMS text, or the <Say> text heard on the call
    url: str = ""  # a call's TwiML URL
    twiml: str = ""  # a call's inline TwiML (or the TwiML fetched from url)
    status: str = "queued"
    status_callback: str = ""
    params: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)  # wall time, for latency measurements
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))
    digits: str | None = None  # keys pressed on this call
    events: list[tuple[float, str]] = field(default_factory=list)  # (wall time, status or event)
    callback_events: frozenset[str] = frozenset({"completed"})  # a call's StatusCallbackEvent (Twilio's default)
    queued_s: float = 0.0  # scenario seconds it waited in Twilio's queue (the sender's or account's rate)
    slot: float = 0.0  # scenario time Twilio's queue lets it out (create time + queued_s)
    sent_at: float | None = None  # scenario time it left the queue, as played (SMS sent, call dialled)

    def as_json(self, account: str) -> dict[str, Any]:
        base = f"{API.format(account=account)}/{'Messages' if self.kind == 'sms' else 'Calls'}/{self.sid}.json"
        date = format_datetime(self.date_created)
        doc: dict[str, Any] = {
            "sid": self.sid, "account_sid": account, "to": self.to, "from": self.from_, "status": self.status,
            "date_created": date, "date_updated": date, "api_version": "2010-04-01", "uri": base,
            "price": None, "price_unit": "USD", "error_code": None, "error_message": None,
        }
        if self.kind == "sms":
            doc.update({"body": self.body, "num_segments": "1", "direction": "outbound-api", "date_sent": date,
                        "messaging_service_sid": None, "num_media": "0"})
            if self.status in ("undelivered", "failed"):
                doc.update({"error_code": 30003, "error_message": "Unreachable destination handset"})
        else:
            doc.update({"direction": "outbound-api", "start_time": date, "end_time": None, "duration": None,
                        "answered_by": None, "parent_call_sid": None})
        return doc


@dataclass(frozen=True)
class TwilioLimits:
    """What Twilio lets through, with its published defaults: a long-code sender sends 1 SMS segment a second
    and an account places 1 call a second; more is queued (not refused), and a message that would wait in the
    queue longer than ``queue_s`` (4 hours) fails with 30001 (queue overflow). Times are scenario seconds."""

    sms_segments_per_s: float = 1.0  # per sender (From)
    calls_per_s: float = 1.0  # per account
    queue_s: float = 4 * 3600.0

    @classmethod
    def off(cls) -> TwilioLimits:
        return cls(sms_segments_per_s=0, calls_per_s=0)


def segments(body: str) -> int:
    """SMS segments: GSM-7 160 (153 per part), anything else (Chinese) UCS-2 70 (67 per part)."""
    gsm = all(ord(c) < 128 for c in body)
    single, part = (160, 153) if gsm else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // part)


@dataclass
class Injection:
    remaining: int
    status: int  # HTTP status, or 0 for a dropped connection
    kinds: frozenset[str]  # which endpoints: 'sms', 'call'
    after_create: bool = False  # drop the connection only after the message/call was created (lost answer)


def parse_twiml(twiml: str) -> tuple[list[str], dict[str, str] | None]:
    """The spoken text of ``<Say>`` verbs (also inside ``<Gather>``) and the first ``<Gather>``'s attributes."""
    if not twiml.strip():
        return [], None
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError:
        return [], None
    says = [(el.text or "").strip() for el in root.iter("Say")]
    gather = next(iter(root.iter("Gather")), None)
    return says, (dict(gather.attrib) if gather is not None else None)


def twilio_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                              "status": status}, status=status)
