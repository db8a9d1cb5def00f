"""The notification pipeline, in one visible order:

    record (nflog) → group / inhibit / silence → route → render → enqueue (nflog) → fan-out → confirm / escalate

One :class:`Pipeline` per kind of warning: real, or drill. Each has its own notification log, so a drill
can never reach a real recipient nor be promoted to a real warning; they share the provider and its
rate limits (one :class:`~alerts.fanout.Dispatcher`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import Counter

from alerts.config import AlertsConfig, ProviderName
from alerts.directory import Directory
from alerts.escalate import Escalator
from alerts.fanout import Dispatcher, Outcome
from alerts.group import Decision, Grouper, Verdict
from alerts.nflog import NodeTier, Notification, NotificationLog, Status, WarningStatus
from alerts.plan import estimate
from alerts.render import Renderer
from alerts.retry import FAILURES, Failed, Retries, Stage, alarm, duty_office
from alerts.route import DrillRouted, Recipient, drill_route, route
from yujing.clock import Clock
from yujing.config.people import Channel, Person, Role
from yujing.log import Limiter
from yujing.model import HazardWarning, WarningState

log = logging.getLogger("yujing.alerts")
DECISIONS = Counter("yujing_alerts_warnings_total", "Warnings by what was decided", ["verdict", "kind"])
PROBLEMS = Counter("yujing_alerts_routing_problems_total", "Warnings that could not be fully routed", ["reason"])
_limiter = Limiter(60.0)

_VALUE = {c: c.value for c in Channel}
CHUNK = 250  # recipients written (and handed to the senders) per transaction

Publish = Callable[[HazardWarning, str], Awaitable[None]]  # (warning as sent, its text) → CAP etc.


@dataclass
class Pipeline:
    cfg: AlertsConfig
    directory: Directory
    nflog: NotificationLog
    dispatcher: Dispatcher
    clock: Clock
    drill: bool = False
    drill_people: list[Person] = field(default_factory=list)
    publish: Publish | None = None

    def __post_init__(self) -> None:
        self.renderer = Renderer(self.cfg.templates, self.cfg.ack.digits)
        devices = collections.Counter(d.site for g in self.directory.config.gateways for d in g.devices)
        # a site with one device has nothing to gather (several rules of one reading arrive as one warning);
        # with none configured its devices are unknown: held as before
        self.grouper = Grouper(self.cfg.grouping.wait_s, self.cfg.silences, self._chain_ids,
                               alone=lambda w: devices.get(w.site) == 1)
        self.escalator = Escalator(self.cfg, self.directory)
        self.kind = "drill" if self.drill else "real"
        self.retries = Retries(self.kind, self.clock)
        self._stage = Stage.GROUP  # the stage _decide_one is in (what a failure is counted under)
        self.templated = any(p is not ProviderName.TWILIO for p in self.cfg.providers)  # approved templates only
        self._allowed: frozenset[str] | None = None

    # ---- in ---------------------------------------------------------------------------------------
    async def handle(self, w: HazardWarning) -> None:
        """One warning from the rules: recorded first, then decided on."""
        if w.drill != self.drill:
            raise ValueError(f"a {'drill' if w.drill else 'real'} warning reached the {self.kind} pipeline")
        now = self.clock.now()
        if not self.nflog.warnings.record(w, now):
            return  # a re-delivery (QoS 1, persistent session): already recorded, already acted on (or retried)
        # From here on the warning is in the log: whatever fails is retried from it, never dropped (alerts/retry.py)
        await self._offer(w)

    async def _offer(self, w: HazardWarning) -> None:
        now = self.clock.now()
        try:
            if w.id not in self.retries:
                self.nflog.timeline.add(now, w.id, "", "received", {"level": w.level.value, "state": w.state.value})
            decisions = self.grouper.offer(w, now)
        except Exception as exc:  # noqa: BLE001  a bug or a full disk must not lose the warning: retried
            self._failed(w, Stage.GROUP, exc)
            return
        if w.id in self.retries:
            self._recovered(w.id)
        await self._decide(decisions)

    async def tick(self) -> None:
        """Flush held groups and run due escalation steps; call whenever :meth:`next_due` passes."""
        now = self.clock.now()
        await self._decide(self.grouper.due(now))
        for f in self.retries.due(now):
            latest = self.nflog.warnings.latest(f.warning.key)
            if latest is not None and latest.version > f.warning.version:  # a newer version speaks instead
                self.retries.recovered(f.warning.id)
                self.nflog.warnings.set_state(f.warning.id, WarningStatus.SUPERSEDED)
                self.nflog.timeline.add(now, f.warning.id, "", "handling-superseded", {"by": latest.id})
                continue
            if isinstance(f.item, Decision):
                await self._decide([f.item])
            else:
                await self._offer(f.item)
        failed: Exception | None = None
        for wid, origin, step, due in list(self.nflog.timers.pending()):
            if due > now:
                break
            try:
                self._escalate(wid, origin, step, now)
            except Exception as exc:  # noqa: BLE001  one chain's failure must not hold up the others' steps
                failed = failed or exc
                self._escalation_failed(wid, exc)
        if failed is not None:
            raise failed  # the failed steps are still due: the timer retries them after a pause

    def _escalate(self, wid: str, origin: str, step: int, now: datetime) -> None:
        # one transaction: a crash leaves the step either due (it runs again) or done with its calls queued
        with self.nflog.transaction():
            esc = self.escalator.step(self.nflog, wid, origin, step, now)
            w = self.nflog.warnings.get(wid)
            if esc is None or w is None:
                return
            people = esc.recipients
            if self.drill:  # the step is timed as for real; only its participants are called
                people = self._taking_part(w, people, attempt=esc.attempt, now=now, observers=False)
            fresh = self.nflog.notifications.enqueue(self._items(w, people, esc.attempt, escalation=True), now)
            self.nflog.timeline.add(now, w.id, "", "escalation-queued", {"recipients": len(people),
                                                                   "notifications": len(fresh),
                                                                   "attempt": esc.attempt})
        self.dispatcher.submit(self.nflog, fresh)
        self._routed(w, len(people), len(fresh))

    def _escalation_failed(self, wid: str, exc: Exception) -> None:
        """Counted, and the duty office alarmed (once per warning); the step itself stays due and is retried."""
        stage = Stage.ESCALATE  # whatever raised (the log's disk included): it is the step that did not happen
        FAILURES.labels(stage=stage.value, kind=self.kind).inc()
        with contextlib.suppress(sqlite3.Error):
            w = self.nflog.warnings.get(wid)
            if w is not None:
                self._alarm(w, Failed(w, stage, f"{type(exc).__name__}: {exc}"[:300], 1, self.clock.now()))

    def next_due(self) -> datetime | None:
        times = [t for t in (self.grouper.next_due(), self.escalator.next_due(self.nflog), self.retries.next_due())
                 if t is not None]
        return min(times) if times else None

    async def restore(self) -> None:
        """After a (re)start: rebuild group state from the log, finish warnings caught mid-way."""
        now = self.clock.now()
        for state in (WarningStatus.ROUTED, WarningStatus.GROUPED, WarningStatus.INHIBITED, WarningStatus.SILENCED):
            for w in self.nflog.warnings.in_state(state):
                self.grouper.restore(w, state is WarningStatus.ROUTED, now)
        for w in (self.nflog.warnings.in_state(WarningStatus.RECEIVED)
                  + self.nflog.warnings.in_state(WarningStatus.FAILED)):
            await self._offer(w)
        queued, found = await self.dispatcher.recover(self.nflog)
        if queued or found:
            log.info("notification log recovered", extra={"kv": {"kind": self.kind, "requeued": queued,
                                                                   "found_sent": found}})

    # ---- decide -----------------------------------------------------------------------------------
    async def _decide(self, decisions: list[Decision]) -> None:
        """Carry out each decision; one that fails is retried (alerts/retry.py) and the others go on."""
        for d in decisions:
            self._stage = Stage.GROUP
            try:
                await self._decide_one(d)
            except Exception as exc:  # noqa: BLE001  never swallowed: counted, alarmed and retried
                self._failed(d, Stage.LOG if isinstance(exc, sqlite3.Error) else self._stage, exc)
            else:
                if d.warning.id in self.retries:
                    self._recovered(d.warning.id)

    async def _decide_one(self, d: Decision) -> None:
        now = self.clock.now()
        if d.warning.id not in self.retries:
            DECISIONS.labels(verdict=d.verdict.value, kind=self.kind).inc()
        w = d.warning
        if d.verdict is Verdict.HOLD:
            return
        if d.verdict is not Verdict.SEND:
            if d.verdict is not Verdict.DUPLICATE:
                self.nflog.warnings.set_state(w.id, WarningStatus(d.verdict.value))
                self.nflog.timeline.add(now, w.id, "", d.verdict.value, {"by": d.by})
            return
        sent = w.model_copy(update={"evidence": list(d.evidence)}) if d.evidence else w
        self._stage = Stage.ROUTE
        if w.state is WarningState.LIFTED:
            recipients = self._lift_recipients(d.keys)
        else:
            routed = route(w, self.directory, self.cfg)
            for p in routed.problems:
                PROBLEMS.labels(reason=p.split(" ")[0]).inc()
                if _limiter.allow(("route", p)):
                    log.warning("routing problem", extra={"kv": {"warning": w.id, "problem": p}})
            recipients = routed.recipients
            if self.drill:  # routed like the real warning, then cut down to the people taking part
                recipients = self._taking_part(w, recipients, attempt=1, now=now, observers=True)
        self._stage = Stage.RENDER
        self.escalator.supersede(self.nflog, w.key, w.id, now)
        await self._notify(sent, recipients, attempt=1)
        if self.publish is not None:  # before 'routed': a crash in between re-decides it, CAP included
            try:
                await self.publish(sent, self.text(sent, ack=False, channel="sms"))
            except Exception:  # publishing CAP must never stop the phones
                log.exception("publishing the CAP document failed", extra={"kv": {"warning": w.id}})
        self.nflog.warnings.set_state(w.id, WarningStatus.ROUTED)

    # ---- when a stage fails -----------------------------------------------------------------------
    def _failed(self, item: Decision | HazardWarning, stage: Stage, exc: BaseException) -> None:
        """Keep ``item`` for a retry with backoff, mark it failed in the log, and tell the county duty office."""
        f = self.retries.failed(item, stage, exc)
        now = self.clock.now()
        # the log may be what failed: then the retry is in memory, and the warning 'received' on disk
        with contextlib.suppress(sqlite3.Error):
            self.nflog.warnings.set_state(f.warning.id, WarningStatus.FAILED)
            self.nflog.timeline.add(now, f.warning.id, "", "handling-failed", {
                "stage": stage.value, "error": f.error, "attempt": f.attempts})
        if not f.alarmed:  # an alarm the log refused is tried again at the next failure, or at recovery
            f.alarmed = self._alarm(f.warning, f)

    def _recovered(self, warning_id: str) -> None:
        f = self.retries.recovered(warning_id)
        if f is None:
            return
        with contextlib.suppress(sqlite3.Error):
            self.nflog.timeline.add(self.clock.now(), warning_id, "", "handling-recovered", {"attempts": f.attempts})
        if not f.alarmed:  # late is still worth the duty office's knowing
            self._alarm(f.warning, f)

    def _alarm(self, w: HazardWarning, f: Failed) -> bool:
        """The equipment-style alarm to the county duty office (drill participants, in a drill): once per warning."""
        now = self.clock.now()
        to = ([("drill", NodeTier.DRILL, p) for p in self.drill_people] if self.drill
              else duty_office(self.directory, w))
        a, items = alarm(w, f, to, self.drill, now)
        if self.templated:  # a provider of approved templates only: the alarm goes as an equipment warning's
            try:
                for n in items:
                    n.template = self.rendered(a, False, n.channel)[1]
            except Exception:  # noqa: BLE001  the full text still goes to any full-text provider
                log.exception("could not render the internal alarm for a template provider")
        try:
            if not self.nflog.warnings.record(a, now):
                return True  # already raised for this warning
            with self.nflog.transaction():
                fresh = self.nflog.notifications.enqueue(items, now)
                self.nflog.warnings.set_state(a.id, WarningStatus.INTERNAL_ALARM)  # not 'routed': no group, no CAP, not restored
                self.nflog.timeline.add(now, w.id, "", "internal-alarm", {"alarm": a.id, "to": [n.phone for n in fresh]})
        except sqlite3.Error:
            log.exception("could not queue the internal alarm", extra={"kv": {"warning": w.id}})
            with contextlib.suppress(sqlite3.Error):  # not raised yet: the next failure tries again
                self.nflog.warnings.unrecord(a.id)
            return False
        if not to:
            log.error("no county duty office to alarm", extra={"kv": {"warning": w.id}})
        self.dispatcher.submit(self.nflog, fresh)
        return True

    def _taking_part(self, w: HazardWarning, found: list[Recipient], *, attempt: int, now: datetime,
                     observers: bool) -> list[Recipient]:
        """A drill: who of ``found`` takes part (told), and the rest written down as would-have-been-told."""
        cut: DrillRouted = drill_route(found, self.drill_people, self.directory, observers=observers)
        if cut.untold:
            self.nflog.timeline.add(now, w.id, "", "drill-untold", {
                "attempt": attempt,
                "recipients": [[r.phone, r.node, r.tier, " ".join(_VALUE[c] for c in r.channels), r.ack]
                               for r in cut.untold]})
        return cut.told

    def _chain_ids(self, w: HazardWarning) -> set[str]:
        """The area ids on ``w``'s chain, for silences over an area."""
        site = self.directory.site(w.site) if w.site else None
        area = w.area or (site.area if site else "")
        return {a.id for a in self.directory.config.lineage(area)} if self.directory.area(area) else set()

    # ---- route → render → enqueue ----------------------------------------------------------------
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

    def _items(self, w: HazardWarning, recipients: list[Recipient], attempt: int, escalation: bool = False,
               texts: dict[tuple[bool, str, str], tuple[str, str]] | None = None) -> list[Notification]:
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

    async def _notify(self, w: HazardWarning, recipients: list[Recipient], attempt: int) -> list[Notification]:
        """Queue and hand on the first notifications of ``w``, and open a 叫应 chain for each asked to confirm."""
        now = self.clock.now()
        fresh: list[Notification] = []
        asked: set[str] = set()
        texts: dict[tuple[bool, str, str], tuple[str, str]] = {}
        # in chunks: the first recipients (the officials) are on their way while the households are written
        for i in range(0, len(recipients), CHUNK):
            items = self._items(w, recipients[i:i + CHUNK], attempt, texts=texts)
            asked.update(n.phone for n in items if n.ack)
            chunk = self.nflog.notifications.enqueue(items, now)
            self.dispatcher.submit(self.nflog, chunk)
            fresh += chunk
            if i + CHUNK < len(recipients):
                await asyncio.sleep(0)
        self.nflog.timeline.add(now, w.id, "", "queued",
                         {"recipients": len(recipients), "notifications": len(fresh), "attempt": attempt})
        if fresh:
            plan = estimate(fresh, self.cfg)
            self.nflog.timeline.add(now, w.id, "", "fanout-plan", plan.as_dict())
            log.info("fan-out plan: the last person is reached in about %.0f s", plan.last_s,
                     extra={"kv": {"warning": w.id, **plan.as_dict()}})
        # everyone asked, not only the fresh: after a crash mid fan-out the re-decision opens the missing chains
        self.escalator.open(self.nflog, w, sorted(asked), now)
        self._routed(w, len(recipients), len(fresh))
        return fresh

    def _routed(self, w: HazardWarning, recipients: int, notifications: int) -> None:
        log.info("warning routed", extra={"kv": {"kind": self.kind, "warning": w.id, "level": w.level.value,
                                                 "state": w.state.value, "recipients": recipients,
                                                 "notifications": notifications}})

    def _lift_recipients(self, keys: tuple[str, ...]) -> list[Recipient]:
        """Everyone the warning reached (any version, any member of its group), by SMS where they had it."""
        seen: dict[str, tuple[Notification, set[str]]] = {}
        for key in keys:
            for n in self.nflog.notifications.for_warning_key(key):
                if n.status is Status.FAILED:
                    continue
                entry = seen.setdefault(n.phone, (n, set()))
                entry[1].add(n.channel)
        out = []
        for phone, (n, chans) in seen.items():
            ch = Channel.SMS if Channel.SMS.value in chans or not chans else Channel.VOICE
            person = Person(name=n.name, role=Role.HOUSEHOLD if n.tier is NodeTier.HOUSEHOLD else Role.RESPONSIBLE,
                            phone=phone, channels=[ch])
            out.append(Recipient(person, n.node, n.tier, (ch,), False, "lift"))
        return out

    # ---- callbacks from the provider -------------------------------------------------------------
    async def on_outcome(self, outcome: Outcome) -> None:
        if outcome.error is None:
            return
        n = outcome.notification
        if n.channel is Channel.SMS:
            await self._fallback(n, f"provider: {outcome.error}")
        w = self.nflog.warnings.get(n.warning_id)
        if w is not None and n.reason != "alerts-failure":  # an alarm that failed cannot be alarmed about
            # refused for good: that person may not be reached at all (the SMS's call fallback and 叫应 carry on);
            # the duty office hears of it, once per warning
            FAILURES.labels(stage=Stage.SEND.value, kind=self.kind).inc()
            self._alarm(w, Failed(w, Stage.SEND, f"{n.phone} {n.channel}: {outcome.error}"[:300], 1, self.clock.now()))

    async def on_status(self, sid: str, said: str, error: str) -> Notification | None:
        """The provider's word ``said`` on the message or call ``sid``."""
        now = self.clock.now()
        status = Status.from_provider(said)
        def record() -> Notification | None:  # the status and its event, committed with the turn's others
            n = self.nflog.notifications.receipt(sid, status, error, now)
            if n is not None:
                self.nflog.timeline.add(now, n.warning_id, n.phone, f"{n.channel}-{said}", {"sid": sid, "error": error})
            return n
        n = await self.nflog.group.run(record)
        if n is None:
            return None
        if n.channel is Channel.SMS and status in (Status.UNDELIVERED, Status.FAILED):
            await self._fallback(n, f"status {status} {error}".strip())
        return n

    async def _fallback(self, n: Notification, why: str) -> None:
        """A failed SMS is followed by a voice call with the same words (once per SMS)."""
        w = self.nflog.warnings.get(n.warning_id)
        if w is None:
            return
        now = self.clock.now()
        body, template = self.rendered(w, n.ack, Channel.VOICE)
        voice = Notification(key=Notification.make_key(n.warning_id, n.phone, Channel.VOICE, n.attempt),
                             warning_id=n.warning_id, warning_key=n.warning_key, phone=n.phone,
                             channel=Channel.VOICE, attempt=n.attempt, priority=n.priority + 1,
                             body=body, ack=n.ack, node=n.node, tier=n.tier, name=n.name, reason=n.reason,
                             template=template)
        fresh = self.nflog.notifications.enqueue([voice], now)
        if fresh:
            self.nflog.timeline.add(now, n.warning_id, n.phone, "sms-fallback-to-voice", why)
            self.dispatcher.submit(self.nflog, fresh)

    def confirm(self, n: Notification, via: str) -> bool:
        return self.escalator.confirm(self.nflog, n, via, self.clock.now())

    def confirm_reply(self, phone: str, via: str, received_at: datetime) -> list[str]:
        """An SMS reply from ``phone`` that the provider received at ``received_at`` (wall clock) confirms every
        warning it was asked to confirm, by a request made by then, and has not confirmed yet; not one asked
        later (the reply cannot be about it)."""
        done: list[str] = []
        for n in self.nflog.notifications.awaiting_confirmation(phone, asked_by=received_at):
            if n.warning_id not in done:
                self.confirm(n, via)
                done.append(n.warning_id)
        return done
