"""The notification pipeline: each warning through the stages listed in :meth:`Pipeline.__post_init__`, in order.

    record → group → decide → route → render → enqueue → fan-out → confirm → publish → done

Every stage has one signature: it takes a :class:`Job` (one warning on its way, each stage filling in its part)
and returns the jobs that go on to the next stage — none stops it there (a re-delivery, a warning held for its
group or silenced, a chunk handed to the senders), several split it (the group's decisions, the chunks of a
fan-out). Once a warning is recorded, a stage that fails has it retried from the log (alerts/retry.py).
Escalation steps (the timers of 叫应) and the providers' receipts (alerts/receipts.py) reuse the same parts.

One :class:`Pipeline` per kind of warning: real, or drill. Each has its own notification log, so a drill
can never reach a real recipient nor be promoted to a real warning; they share the provider and its
rate limits (one :class:`~alerts.fanout.Dispatcher`).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import Counter

from alerts.config import AlertsConfig, ProviderName
from alerts.directory import Directory
from alerts.escalate import Escalator
from alerts.fanout import Dispatcher
from alerts.group import Decision, Grouper, Verdict
from alerts.nflog import NodeTier, Notification, NotificationLog, Status, WarningStatus
from alerts.notices import PROBLEMS, Notices
from alerts.plan import estimate
from alerts.receipts import Receipts
from alerts.render import Renderer
from alerts.retry import Failures, Retries, Stage
from alerts.route import DrillRouted, Recipient, drill_route, route
from yujing.clock import Clock
from yujing.config.people import Channel, Person, Role
from yujing.log import Limiter
from yujing.model import HazardWarning, WarningState

log = logging.getLogger("yujing.alerts")
DECISIONS = Counter("yujing_alerts_warnings_total", "Warnings by what was decided", ["verdict", "kind"])
_limiter = Limiter(60.0)

CHUNK = 250  # recipients written (and handed to the senders) per transaction

Publish = Callable[[HazardWarning, str], Awaitable[None]]  # (warning as sent, its text) → CAP etc.


@dataclass
class Tally:
    """What the chunks of one fan-out came to (shared by the warning's job and its chunks)."""

    recipients: int
    fresh: list[Notification] = field(default_factory=list)  # new in the log (a re-decision finds the rest there)
    asked: set[str] = field(default_factory=set)  # phones asked to confirm


@dataclass
class Job:
    """One warning on its way through the stages; each stage fills in its part."""

    warning: HazardWarning  # as received
    now: datetime  # scenario time of the step that started it
    decision: Decision | None = None  # group: what its group decided
    told: HazardWarning | None = None  # decide: the warning as told (its group's evidence)
    recipients: list[Recipient] = field(default_factory=list)  # route
    tally: Tally | None = None  # render: shared with the chunks
    items: list[Notification] = field(default_factory=list)  # render: a chunk's notifications
    fresh: list[Notification] = field(default_factory=list)  # enqueue: those of the chunk new in the log
    chunk: bool = False  # one chunk of the fan-out (its way ends at the senders)


Run = Callable[[Job], Awaitable[Iterable[Job]]]


@dataclass(frozen=True)
class Step:
    name: str
    run: Run
    counted_as: Stage  # where a failure is counted (alerts/retry.py; the log's own errors count as "log")
    apart: bool = False  # the jobs it returns go on each alone: one that fails is retried, the others go on
    retried: bool = True  # False: a failure is raised to the caller (the warning is not in the log yet)


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
        devices = collections.Counter(d.site for g in self.directory.config.gateways for d in g.devices)
        # a site with one device has nothing to gather (several rules of one reading arrive as one warning);
        # with none configured its devices are unknown: held as before
        self.grouper = Grouper(self.cfg.grouping.wait_s, self.cfg.silences, self._chain_ids,
                               alone=lambda w: devices.get(w.site) == 1)
        self.escalator = Escalator(self.cfg, self.directory)
        self.kind = "drill" if self.drill else "real"
        self.retries = Retries(self.kind, self.clock)
        templated = any(p is not ProviderName.TWILIO for p in self.cfg.providers)  # approved templates only
        self.notices = Notices(Renderer(self.cfg.templates, self.cfg.ack.digits), self.directory, templated,
                               self.drill, self.drill_people)
        self.failures = Failures(self.nflog, self.retries, self.notices, self.dispatcher, self.directory, self.clock,
                                 self.drill, self.drill_people)
        self.receipts = Receipts(self.nflog, self.notices, self.escalator, self.dispatcher, self.clock,
                                 self.failures.alarm, self.kind)
        # The order, in one place.
        self.stages: tuple[Step, ...] = (
            Step("record", self._record, Stage.LOG, retried=False),  # into the log before anything else
            Step("group", self._group, Stage.GROUP, apart=True),  # group / inhibit / silence (alerts/group.py)
            Step("decide", self._decide, Stage.GROUP),  # counted; one that does not speak stops here
            Step("route", self._route, Stage.ROUTE),  # who is told, by which channels (alerts/route.py)
            Step("render", self._render, Stage.RENDER),  # the words; one job per chunk of recipients
            Step("enqueue", self._enqueue, Stage.RENDER),  # 'queued' in the log before it is sent
            Step("fan-out", self._fan_out, Stage.RENDER),  # handed to the senders (alerts/fanout.py)
            Step("confirm", self._confirm, Stage.RENDER),  # a 叫应 chain for each asked (alerts/escalate.py)
            Step("publish", self._publish, Stage.RENDER),  # the CAP document kept and published
            Step("done", self._done, Stage.LOG),  # 'routed': a crash before this decides it again
        )
        self._start = {s.name: i for i, s in enumerate(self.stages)}
        self._at = self.stages[0]  # the stage running (what a failure is counted under)

    # ---- in ---------------------------------------------------------------------------------------
    async def handle(self, w: HazardWarning) -> None:
        """One warning from the rules. Raises only if it could not be recorded (the broker sends it again)."""
        if w.drill != self.drill:
            raise ValueError(f"a {'drill' if w.drill else 'real'} warning reached the {self.kind} pipeline")
        await self._attempt(Job(w, self.clock.now()), "record")

    async def tick(self) -> None:
        """Flush held groups, retry failed warnings and run due escalation steps; call whenever
        :meth:`next_due` passes."""
        now = self.clock.now()
        for d in self.grouper.due(now):
            await self._attempt(Job(d.warning, now, decision=d), "decide")
        for f in self.retries.due(now):
            latest = self.nflog.warnings.latest(f.warning.key)
            if latest is not None and latest.version > f.warning.version:  # a newer version speaks instead
                self.retries.recovered(f.warning.id)
                self.nflog.warnings.set_state(f.warning.id, WarningStatus.SUPERSEDED)
                self.nflog.timeline.add(now, f.warning.id, "", "handling-superseded", {"by": latest.id})
            elif isinstance(f.item, Decision):
                await self._attempt(Job(f.warning, now, decision=f.item), "decide")
            else:
                await self._attempt(Job(f.item, now), "group")
        failed: Exception | None = None
        for wid, origin, step, due in list(self.nflog.timers.pending()):
            if due > now:
                break
            try:
                self._escalate(wid, origin, step, now)
            except Exception as exc:  # noqa: BLE001  one chain's failure must not hold up the others' steps
                failed = failed or exc
                self.failures.escalation_failed(wid, exc)
        if failed is not None:
            raise failed  # the failed steps are still due: the timer retries them after a pause

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
        for state in (WarningStatus.RECEIVED, WarningStatus.FAILED):
            for w in self.nflog.warnings.in_state(state):
                await self._attempt(Job(w, now), "group")
        queued, found = await self.dispatcher.recover(self.nflog)
        if queued or found:
            log.info("notification log recovered", extra={"kv": {"kind": self.kind, "requeued": queued,
                                                                   "found_sent": found}})

    def text(self, w: HazardWarning, ack: bool = False, channel: str = "sms", language: str = "zh") -> str:
        return self.notices.text(w, ack, channel, language)

    # ---- running the stages -------------------------------------------------------------------------
    async def _attempt(self, job: Job, start: str) -> None:
        """``job`` through the stages from ``start`` on. One that fails is kept for a retry with backoff,
        counted and alarmed (alerts/retry.py), and the others go on."""
        try:
            await self._through(job, self._start[start])
        except Exception as exc:  # noqa: BLE001  never swallowed: counted, alarmed and retried
            if not self._at.retried:
                raise
            self.failures.failed(job.decision or job.warning, Stage.LOG if isinstance(exc, sqlite3.Error)
                         else self._at.counted_as, exc)
        else:
            if job.decision is not None and job.warning.id in self.retries:
                self.failures.recovered(job.warning.id)

    async def _through(self, job: Job, i: int) -> None:
        if i == len(self.stages):
            return
        step = self.stages[i]
        self._at = step
        jobs: Iterator[Job] = iter(await step.run(job))
        first = True
        while True:
            self._at = step  # a stage's jobs may be made as they are taken (the chunks of a fan-out)
            nxt = next(jobs, None)
            if nxt is None:
                return
            if step.apart:
                await self._attempt(nxt, self.stages[i + 1].name)
                continue
            if not first and nxt.chunk:  # the senders start on the chunk before while this one is written
                await asyncio.sleep(0)
            first = False
            await self._through(nxt, i + 1)

    # ---- the stages, in order ---------------------------------------------------------------------
    async def _record(self, job: Job) -> Iterable[Job]:
        if not self.nflog.warnings.record(job.warning, job.now):
            return ()  # a re-delivery (QoS 1, persistent session): already recorded, already acted on (or retried)
        return (job,)  # from here on the warning is in the log: whatever fails is retried from it, never dropped

    async def _group(self, job: Job) -> Iterable[Job]:
        w = job.warning
        if w.id not in self.retries:
            self.nflog.timeline.add(job.now, w.id, "", "received", {"level": w.level.value, "state": w.state.value})
        decisions = self.grouper.offer(w, job.now)
        if w.id in self.retries:
            self.failures.recovered(w.id)
        return [Job(d.warning, job.now, decision=d) for d in decisions]

    async def _decide(self, job: Job) -> Iterable[Job]:
        d = job.decision
        assert d is not None
        w = d.warning
        if w.id not in self.retries:
            DECISIONS.labels(verdict=d.verdict.value, kind=self.kind).inc()
        if d.verdict is Verdict.HOLD:
            return ()
        if d.verdict is not Verdict.SEND:
            if d.verdict is not Verdict.DUPLICATE:
                self.nflog.warnings.set_state(w.id, WarningStatus(d.verdict.value))
                self.nflog.timeline.add(job.now, w.id, "", d.verdict.value, {"by": d.by})
            return ()
        job.told = w.model_copy(update={"evidence": list(d.evidence)}) if d.evidence else w
        return (job,)

    async def _route(self, job: Job) -> Iterable[Job]:
        """Who is told (a lift: everyone the warning reached); a drill: only those taking part. The 叫应
        chains of the key's older versions stop: this one speaks now."""
        w, d = job.warning, job.decision
        assert d is not None
        if w.state is WarningState.LIFTED:
            job.recipients = self._lift_recipients(d.keys)
        else:
            routed = route(w, self.directory, self.cfg)
            for p in routed.problems:
                PROBLEMS.labels(reason=p.split(" ")[0]).inc()
                if _limiter.allow(("route", p)):
                    log.warning("routing problem", extra={"kv": {"warning": w.id, "problem": p}})
            job.recipients = routed.recipients
            if self.drill:  # routed like the real warning, then cut down to the people taking part
                job.recipients = self._taking_part(w, job.recipients, attempt=1, now=job.now, observers=True)
        self.escalator.supersede(self.nflog, w.key, w.id, job.now)
        return (job,)

    async def _render(self, job: Job) -> Iterable[Job]:
        """One job per CHUNK recipients, each rendered as it is taken, then the warning's own: the first
        recipients (the officials) are on their way while the households are still being written."""
        assert job.told is not None
        told, tally = job.told, Tally(len(job.recipients))
        job.tally = tally
        texts: dict[tuple[bool, str, str], tuple[str, str]] = {}

        def jobs() -> Iterator[Job]:
            for i in range(0, len(job.recipients), CHUNK):
                items = self.notices.items(told, job.recipients[i:i + CHUNK], 1, texts=texts)
                tally.asked.update(n.phone for n in items if n.ack)
                yield dataclasses.replace(job, items=items, chunk=True)
            yield job
        return jobs()

    async def _enqueue(self, job: Job) -> Iterable[Job]:
        if job.chunk:
            assert job.tally is not None
            job.fresh = self.nflog.notifications.enqueue(job.items, job.now)
            job.tally.fresh += job.fresh
        return (job,)

    async def _fan_out(self, job: Job) -> Iterable[Job]:
        """A chunk is handed to the senders; the warning's own job writes down what the fan-out came to."""
        if job.chunk:
            self.dispatcher.submit(self.nflog, job.fresh)
            return ()
        assert job.tally is not None and job.told is not None
        fresh = job.tally.fresh
        self.nflog.timeline.add(job.now, job.warning.id, "", "queued", {
            "recipients": job.tally.recipients, "notifications": len(fresh), "attempt": 1})
        if fresh:
            plan = estimate(fresh, self.cfg)
            self.nflog.timeline.add(job.now, job.warning.id, "", "fanout-plan", plan.as_dict())
            log.info("fan-out plan: the last person is reached in about %.0f s", plan.last_s,
                     extra={"kv": {"warning": job.warning.id, **plan.as_dict()}})
        return (job,)

    async def _confirm(self, job: Job) -> Iterable[Job]:
        """Everyone asked, not only the fresh: after a crash mid fan-out the re-decision opens the missing chains."""
        assert job.tally is not None and job.told is not None
        self.escalator.open(self.nflog, job.told, sorted(job.tally.asked), job.now)
        self._routed(job.told, job.tally.recipients, len(job.tally.fresh))
        return (job,)

    async def _publish(self, job: Job) -> Iterable[Job]:
        """Before 'routed': a crash in between decides it again, CAP document included."""
        assert job.told is not None
        if self.publish is not None:
            try:
                await self.publish(job.told, self.text(job.told, ack=False, channel="sms"))
            except Exception:  # publishing CAP must never stop the phones
                log.exception("publishing the CAP document failed", extra={"kv": {"warning": job.warning.id}})
        return (job,)

    async def _done(self, job: Job) -> Iterable[Job]:
        self.nflog.warnings.set_state(job.warning.id, WarningStatus.ROUTED)
        return ()

    # ---- 叫应 escalation steps (on the timer) -------------------------------------------------------
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
            fresh = self.nflog.notifications.enqueue(self.notices.items(w, people, esc.attempt, escalation=True), now)
            self.nflog.timeline.add(now, w.id, "", "escalation-queued", {
                "recipients": len(people), "notifications": len(fresh), "attempt": esc.attempt})
        self.dispatcher.submit(self.nflog, fresh)
        self._routed(w, len(people), len(fresh))

    # ---- who -------------------------------------------------------------------------------------
    def _taking_part(self, w: HazardWarning, found: list[Recipient], *, attempt: int, now: datetime,
                     observers: bool) -> list[Recipient]:
        """A drill: who of ``found`` takes part (told), and the rest written down as would-have-been-told."""
        cut: DrillRouted = drill_route(found, self.drill_people, self.directory, observers=observers)
        if cut.untold:
            self.nflog.timeline.add(now, w.id, "", "drill-untold", {
                "attempt": attempt,
                "recipients": [[r.phone, r.node, r.tier, " ".join(c.value for c in r.channels), r.ack]
                               for r in cut.untold]})
        return cut.told

    def _chain_ids(self, w: HazardWarning) -> set[str]:
        """The area ids on ``w``'s chain, for silences over an area."""
        site = self.directory.site(w.site) if w.site else None
        area = w.area or (site.area if site else "")
        return {a.id for a in self.directory.config.lineage(area)} if self.directory.area(area) else set()

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
            ch = Channel.SMS if Channel.SMS in chans or not chans else Channel.VOICE
            person = Person(name=n.name, role=Role.HOUSEHOLD if n.tier is NodeTier.HOUSEHOLD else Role.RESPONSIBLE,
                            phone=phone, channels=[ch])
            out.append(Recipient(person, n.node, n.tier, (ch,), False, "lift"))
        return out

    def _routed(self, w: HazardWarning, recipients: int, notifications: int) -> None:
        log.info("warning routed", extra={"kv": {"kind": self.kind, "warning": w.id, "level": w.level.value,
                                                 "state": w.state.value, "recipients": recipients,
                                                 "notifications": notifications}})
