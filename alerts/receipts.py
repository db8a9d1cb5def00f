"""What comes back from the providers and the people: a send's outcome, a delivery or call status, a 叫应
confirmation. A failed SMS is followed by a call with the same words; a notification refused for good alarms
the county duty office (once per warning).

Called by the fan-out (``on_outcome``), the webhooks (Twilio's, Alibaba Cloud's) and the duty office's
requests; each writes to the pipeline's log and, for a fallback call, hands it to the same fan-out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from alerts.escalate import Escalator
from alerts.fanout import Dispatcher, Outcome
from alerts.nflog import Notification, NotificationLog, Status
from alerts.notices import Notices
from alerts.retry import FAILURES, Failed, Stage
from yujing.clock import Clock
from yujing.config.people import Channel
from yujing.model import HazardWarning

Alarm = Callable[[HazardWarning, Failed], bool]  # the pipeline's alarm to the duty office


@dataclass
class Receipts:
    nflog: NotificationLog
    notices: Notices
    escalator: Escalator
    dispatcher: Dispatcher
    clock: Clock
    alarm: Alarm
    kind: str  # "real" or "drill": a metric label

    async def on_outcome(self, outcome: Outcome) -> None:
        """The fan-out's word on one send (alerts/fanout.py)."""
        if outcome.error is None:
            if outcome.sid is not None:
                await self._early(outcome.notification, outcome.sid)
            return
        n = outcome.notification
        if n.channel is Channel.SMS:
            await self._fallback(n, f"provider: {outcome.error}")
        w = self.nflog.warnings.get(n.warning_id)
        if w is not None and n.reason != "alerts-failure":  # an alarm that failed cannot be alarmed about
            # refused for good: that person may not be reached at all (the SMS's call fallback and 叫应 carry on);
            # the duty office hears of it, once per warning
            FAILURES.labels(stage=Stage.SEND.value, kind=self.kind).inc()
            self.alarm(w, Failed(w, Stage.SEND, f"{n.phone} {n.channel}: {outcome.error}"[:300], 1, self.clock.now()))

    async def on_status(self, sid: str, said: str, error: str) -> Notification | None:
        """The provider's word ``said`` on the message or call ``sid``: the notification it is about, if ours."""
        status = Status.from_provider(said)
        # the status and its event, committed with this turn's other receipts (one call, nflog/group.py)
        n = await self.nflog.group.many(self.nflog.record_receipts, (sid, said, status, error, self.clock.now()))
        await self.after_status(n, status, said, error)
        return n

    async def on_status_once(self, provider: str, event_id: str, sid: str, said: str, error: str) -> bool:
        """:meth:`on_status` for a provider event whose id this log keeps (the real log): the id and the status in
        one write. False if the id was seen before (a replay: nothing is done)."""
        status = Status.from_provider(said)
        replayed, n = await self.nflog.group.many(self.nflog.record_receipts_once, (
            provider, event_id, sid, said, status, error, self.clock.now()))
        if replayed:
            return False
        await self.after_status(n, status, said, error)
        return True

    async def after_status(self, n: Notification | None, status: Status, said: str, error: str) -> None:
        """What a recorded status leads to: a failed SMS is followed by a call. (The word as kept: a late or
        repeated one moves nothing, and calls no one.)"""
        if n is not None and n.channel is Channel.SMS and n.status is status and status in (Status.UNDELIVERED,
                                                                                             Status.FAILED):
            await self._fallback(n, f"status {said} {error}".strip())

    async def _early(self, n: Notification, sid: str) -> None:
        """Receipts that came before ``sid`` was stored (the provider's callback can beat its own answer to the
        send): the log applied them as the sid landed; here their events, and a failed SMS's call."""
        early = self.nflog.notifications.applied_early.pop(sid, None)
        if not early:
            return
        now = self.clock.now()

        def record() -> None:  # committed with the turn's other writes (nflog/group.py)
            for _status, error, said in early:
                self.nflog.timeline.add(now, n.warning_id, n.phone, f"{n.channel}-{said}",
                                        {"sid": sid, "error": error, "early": True})
        await self.nflog.group.run(record)
        best, error, said = max(early, key=lambda e: e[0].rank)
        if n.channel is Channel.SMS and best in (Status.UNDELIVERED, Status.FAILED):
            await self._fallback(n, f"status {said} {error}".strip())

    async def _fallback(self, n: Notification, why: str) -> None:
        """A failed SMS is followed by a voice call with the same words (once per SMS)."""
        w = self.nflog.warnings.get(n.warning_id)
        if w is None:
            return
        now = self.clock.now()
        body, template = self.notices.rendered(w, n.ack, Channel.VOICE)
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
        """``n``'s recipient confirmed (叫应): their chain stops. False if they had already."""
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
