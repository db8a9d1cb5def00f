"""How the people of a drill answer (the scenario's ``calls:``), told to the Twilio stand-in; and what the
stand-in saw (messages, calls, key presses, replies), read back into the drill's timeline.
"""

from __future__ import annotations

import fnmatch
import time
from typing import Any

from simulators.report.timeline import Kind
from simulators.scenario import Answer, Calls, Who
from simulators.twilio import Behaviour, Record
from simulators.twilio_records import parse_twiml

_TIER_DEPTH = {"city": 1, "county": 2, "township": 3, "village": 4, "group": 5, "household": 6, "site": 5}


def matches(who: Who, person: Any) -> bool:
    """``person`` is a recorder.Person. ``area`` matches the area itself or anything under it."""
    if who.role is not None and person.role != who.role.value:
        return False
    if who.tier is not None and person.tier != who.tier:
        return False
    if who.area is not None and not (person.area == who.area or person.area.startswith(who.area + ".")
                                     or fnmatch.fnmatch(person.area, who.area)):
        return False
    if who.phone is not None and person.phone != who.phone:
        return False
    return who.name is None or person.name == who.name


def answer_for(calls: Calls, person: Any) -> Answer:
    for rule in calls.rules:
        if matches(rule.who, person):
            return rule
    return calls.default


def participants(cfg: Any, selectors: list[Who], people: dict[str, Any]) -> list[Any]:
    """The configured drill recipients plus everyone the scenario's ``participants`` select."""
    out = {p.phone: p for p in getattr(cfg.alerts, "drill").recipients}
    for person in people.values():
        if person.person is not None and any(matches(w, person) for w in selectors):
            out.setdefault(person.phone, person.person)
    return list(out.values())


def behaviour(a: Answer) -> Behaviour:
    if a.never_answer:
        return Behaviour(answer=False, ring_s=60.0, sms_reply=None)
    return Behaviour(answer=True, ring_s=a.answer_after_s, digits=a.press or None, press_after_s=5.0,
                     sms_reply=a.reply_sms, reply_after_s=a.answer_after_s)


def configure(standin: Any, calls: Calls, people: dict[str, Any]) -> None:
    """Give every known number its behaviour (the first matching rule, else the default)."""
    standin.default = behaviour(calls.default)
    for phone, person in people.items():
        b = behaviour(answer_for(calls, person))
        if b != standin.default:
            standin.set_behaviour(phone, b)


_CALL_ENDED = frozenset({"completed", "no-answer", "busy", "failed", "canceled"})


def said(r: Record) -> str:
    """The words of a message, or of a call as its TwiML says them (each <Say> once: the TwiML repeats the
    warning), whether or not anyone answered: a call that rang out was still placed with these words."""
    if r.kind != "call":
        return r.body
    says, _ = parse_twiml(r.twiml)
    return " ".join(dict.fromkeys(s for s in says if s)) or r.body


class CallLog:
    """Reads the stand-in's records into the timeline; call :meth:`update` as often as you like."""

    def __init__(self, standin: Any, rec: Any, clock: Any) -> None:
        self.standin, self.rec, self.clock = standin, rec, clock
        self._seen: set[str] = set()
        self._events: dict[str, int] = {}
        self._unanswered: list[tuple[float, Any]] = []  # (t, person) of calls that rang out
        self._escalated: set[tuple[str, str]] = set()  # (missed phone, called phone), each counted once

    def t_of(self, wall: float) -> float:
        """A wall-clock time of the stand-in as scenario seconds since the drill's start."""
        now_t = self.rec.tl.offset(self.clock.now())
        return now_t - (time.time() - wall) * self.clock.speed

    def update(self) -> None:
        for r in list(self.standin.messages) + list(self.standin.calls):
            self._record(r)

    def _record(self, r: Record) -> None:
        rec = self.rec
        if r.sid not in self._seen:
            text = said(r)
            if not text and r.kind == "call" and r.status not in _CALL_ENDED:
                return  # TwiML fetched from a URL once answered: write the call down when its words are known
            self._seen.add(r.sid)
            # a person is reached when the provider's queue lets the request out, not when it was accepted
            t = self.t_of(r.created) + r.queued_s
            channel = "voice" if r.kind == "call" else "sms"
            self._escalation(t, r, channel)
            rec.notified(t, r.to, channel, text)
        done = self._events.get(r.sid, 0)
        for wall, status in r.events[done:]:
            t = self.t_of(wall)
            if status.startswith("pressed"):
                rec.confirmed(t, r.to, f"call, {status}")
            elif status in ("no-answer", "busy", "failed") and r.kind == "call":
                rec.unanswered(t, r.to, status)
                self._unanswered.append((t, rec.people.get(r.to)))
            elif status == "delivered" and r.kind == "sms":
                reply = self.standin.behaviour(r.to).sms_reply
                if reply is not None:  # the stand-in replies reply_after_s after delivery
                    rec.confirmed(t + self.standin.behaviour(r.to).reply_after_s, r.to, f"SMS reply “{reply}”")
        self._events[r.sid] = len(r.events)

    def _escalation(self, t: float, r: Record, channel: str) -> None:
        """A call to a deputy or to a higher level within the hour after someone's call rang out."""
        if channel != "voice":
            return
        person = self.rec.people.get(r.to)
        if person is None:
            return
        for t_missed, missed in self._unanswered:
            if missed is None or not (0 <= t - t_missed <= 3600):
                continue
            deputy = person.role == "deputy" and person.area == missed.area
            above = _TIER_DEPTH.get(person.tier, 9) < _TIER_DEPTH.get(missed.tier, 9) and \
                (missed.area == person.area or missed.area.startswith(person.area + "."))
            if (deputy or above) and (missed.phone, person.phone) not in self._escalated:
                self._escalated.add((missed.phone, person.phone))
                self.rec.tl.add(t, Kind.ESCALATION, f"{missed.name} ({missed.role}) did not answer: "
                                f"call passed to {person.name} ({person.role}, {person.area})",
                                phone=r.to, missed=missed.phone)
                return
