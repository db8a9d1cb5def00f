"""Warnings whose handling failed: retried with backoff, visible as failed, never acknowledged and forgotten.

A warning is in the notification log before anything is done about it, so its MQTT message can be acknowledged
then. If a later stage raises — grouping, routing, rendering, the log refusing rows, a notification refused for
good — the pipeline hands the warning (or the decision to send it) to :class:`Retries`:

- it is marked ``failed`` in the log (``Pipeline.restore`` takes it up again after a restart) with a
  ``handling-failed`` event, and retried after 1 s, doubling to 60 s (real time: the fault is not on the
  scenario clock), for as long as it fails — a red warning is never given up on;
- every failed attempt is counted (``yujing_alerts_warning_failures_total{stage,kind}``), the warnings failing
  right now are a gauge (``yujing_alerts_failing_warnings{kind}``), and the first failure of each is logged
  with its traceback (then once a minute per stage);
- the county duty office is told at once, like an equipment fault (:func:`alarm`): a fixed text that goes
  through neither routing nor templates, so the bug that broke the warning cannot break the alarm too.
  One alarm per failed warning (its key in the log makes it idempotent, across restarts too).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter, Gauge

from alerts.directory import Directory
from alerts.group import Decision
from alerts.nflog import NodeTier, Notification
from yujing.clock import Clock
from yujing.config.areas import Tier
from yujing.config.people import Person, Role
from yujing.log import Limiter
from yujing.model import Hazard, HazardWarning, Level, WarningState

log = logging.getLogger("yujing.alerts")
FAILURES = Counter("yujing_alerts_warning_failures_total", "Attempts at handling a warning that failed",
                   ["stage", "kind"])
FAILING = Gauge("yujing_alerts_failing_warnings", "Warnings whose handling failed and is being retried", ["kind"])
FIRST_S, MAX_S = 1.0, 60.0
_limiter = Limiter(60.0)


class Stage(enum.StrEnum):
    """Where handling a warning failed (a metric label)."""

    GROUP = "group"
    ROUTE = "route"
    RENDER = "render"  # rendering and queueing the notifications
    LOG = "log"  # the notification log refused a write (SQLite)
    SEND = "send"  # a notification the provider refused for good
    ESCALATE = "escalate"  # a due 叫应 escalation step (it stays due and is retried)


@dataclass
class Failed:
    item: Decision | HazardWarning  # a decision to carry out again, or a warning to offer again
    stage: Stage
    error: str
    attempts: int
    due: datetime  # scenario time
    alarmed: bool = False  # the duty office's alarm is queued (else it is tried again at the next failure)

    @property
    def warning(self) -> HazardWarning:
        return self.item.warning if isinstance(self.item, Decision) else self.item


class Retries:
    """The warnings of one pipeline that failed, each with its next attempt."""

    def __init__(self, kind: str, clock: Clock) -> None:
        self.kind = kind
        self.clock = clock
        self._failed: dict[str, Failed] = {}

    def __contains__(self, warning_id: str) -> bool:
        return warning_id in self._failed

    def failed(self, item: Decision | HazardWarning, stage: Stage, exc: BaseException) -> Failed:
        w = item.warning if isinstance(item, Decision) else item
        before = self._failed.get(w.id)
        attempts = before.attempts + 1 if before else 1
        delay_s = min(MAX_S, FIRST_S * 2 ** (attempts - 1))
        due = self.clock.now() + timedelta(seconds=delay_s * self.clock.speed)
        f = Failed(item, stage, f"{type(exc).__name__}: {exc}"[:300], attempts, due, bool(before and before.alarmed))
        self._failed[w.id] = f
        FAILURES.labels(stage=stage.value, kind=self.kind).inc()
        FAILING.labels(kind=self.kind).set(len(self._failed))
        if before is None or _limiter.allow(("failed", stage)):
            log.error("handling a warning failed; retrying", exc_info=exc, extra={"kv": {
                "kind": self.kind, "warning": w.id, "level": w.level.value, "stage": stage.value,
                "attempt": attempts, "retry_in_s": delay_s}})
        return f

    def recovered(self, warning_id: str) -> Failed | None:
        f = self._failed.pop(warning_id, None)
        if f is not None:
            FAILING.labels(kind=self.kind).set(len(self._failed))
            log.warning("a warning that had failed was handled", extra={"kv": {
                "kind": self.kind, "warning": warning_id, "attempts": f.attempts, "stage": f.stage.value}})
        return f

    def due(self, now: datetime) -> list[Failed]:
        return [f for f in self._failed.values() if f.due <= now]

    def next_due(self) -> datetime | None:
        return min((f.due for f in self._failed.values()), default=None)


def duty_office(directory: Directory, w: HazardWarning) -> list[tuple[str, NodeTier, Person]]:
    """(node, tier, person) of the county duty office above ``w``'s site (every county's if that is unknown)."""
    site = directory.site(w.site)
    county = directory.ancestor(w.area or (site.area if site else ""), Tier.COUNTY)
    counties = [county] if county else [a for a in directory.config.areas if a.tier is Tier.COUNTY]
    return [(a.id, NodeTier.of(a.tier), p) for a in counties for p in directory.people(a.id, [Role.DUTY])]


_WHAT_FAILED = {Stage.SEND: "未能送达部分接收人", Stage.ESCALATE: "的叫应追呼升级未能执行"}


def alarm(w: HazardWarning, f: Failed, to: list[tuple[str, NodeTier, Person]], drill: bool,
          now: datetime) -> tuple[HazardWarning, list[Notification]]:
    """The internal alarm about ``w``: a warning of its own (key ``equipment:alerts-failure:<id>``) and its SMS and
    calls, in a fixed text that needs no template."""
    what = f"{w.title or w.key}（{w.hazard.chinese}{w.level.chinese}预警，{w.site}）"
    failed = _WHAT_FAILED.get(f.stage, "未能正常发出")
    text = (("【演练】" if drill else "") + f"【预警系统故障】{what}{failed}（{f.stage.value}环节出错：{f.error[:80]}），"
            "系统正在自动重试。请立即人工核实，必要时按预案直接通知相关责任人。")
    a = HazardWarning(key=f"equipment:alerts-failure:{w.id}", version=1, hazard=Hazard.EQUIPMENT,
                      level=Level.ORANGE if w.level >= Level.ORANGE else Level.YELLOW, state=WarningState.ISSUED,
                      site=w.site, area=w.area, rule="alerts-failure", title="预警发送故障", evidence=[text],
                      issued_at=now, updated_at=now, drill=drill)
    items = [Notification(key=Notification.make_key(a.id, p.phone, ch, 1), warning_id=a.id, warning_key=a.key,
                          phone=p.phone, channel=ch, attempt=1, priority=100, body=text, ack=False, node=node,
                          tier=tier, name=p.name, reason="alerts-failure")
             for node, tier, p in to for ch in p.channels]
    return a, items
