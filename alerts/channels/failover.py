"""Several providers for one channel, in the configured order: down or refusing → the next, never twice.

A provider that *refused* (a business refusal, bad credentials, no approved template) or could not be reached
(the connection was never made) did not send: the next one is asked. One whose answer was lost (a timeout)
may have sent: the error goes up as it is, and the dispatcher asks *that* provider later whether it has it
(:meth:`find` asks each in turn), so a person is never told twice through two providers.
"""

from __future__ import annotations

import logging
from datetime import datetime

from prometheus_client import Counter

from alerts.channels import Sender
from alerts.nflog import Notification
from alerts.provider import ProviderError, Taken
from yujing.log import Limiter

log = logging.getLogger("yujing.alerts.failover")
FAILOVERS = Counter("yujing_alerts_failovers_total", "Notifications passed to the next provider", ["channel", "to"])
_limiter = Limiter(60.0)


class Failover:
    def __init__(self, senders: list[Sender]) -> None:
        self.senders = senders
        self.channel = senders[0].channel

    async def send(self, n: Notification, since: datetime, drill: bool, taken: Taken | None = None) -> str:
        errors: list[str] = []
        for i, sender in enumerate(self.senders):
            try:
                return await sender.send(n, since, drill, taken)
            except ProviderError as exc:
                if exc.ambiguous or i == len(self.senders) - 1:
                    if errors:
                        exc.args = ("; ".join([*errors, str(exc)]),)
                    raise
                errors.append(str(exc))
                nxt = getattr(self.senders[i + 1], "name", "next")
                FAILOVERS.labels(channel=n.channel, to=nxt).inc()
                if _limiter.allow(("failover", n.channel, str(exc.code))):
                    log.warning("provider did not take the notification; trying the next",
                                extra={"kv": {"key": n.key, "error": str(exc), "next": nxt}})
        raise AssertionError("unreachable: no senders")

    @property
    def batch(self) -> int:
        """Recipients one request can carry: the first provider's (SendSms: 1,000; Twilio: 1)."""
        return getattr(self.senders[0], "batch", 1)

    async def send_batch(self, ns: list[Notification], since: datetime,
                         drill: bool) -> list[str | ProviderError]:
        """One request to the first provider for all of ``ns``; if it refused (nothing was sent: its send APIs
        take a request whole or not at all), each goes on through the others, one by one."""
        try:
            return list(await self.senders[0].send_batch(ns, since, drill))  # type: ignore[attr-defined]
        except ProviderError as exc:
            if exc.ambiguous or len(self.senders) == 1:
                raise
            first_error = exc
        rest = Failover(self.senders[1:])
        out: list[str | ProviderError] = []
        for n in ns:
            try:
                out.append(await rest.send(n, since, drill))
            except ProviderError as exc:
                exc.args = (f"{first_error}; {exc}",)
                out.append(exc)
        return out

    async def find(self, n: Notification, since: datetime, taken: Taken | None = None) -> str | None:
        unsure: ProviderError | None = None
        for sender in self.senders:
            try:
                sid = await sender.find(n, since, taken)
            except ProviderError as exc:  # this one cannot say: nobody may send it again yet
                unsure = exc
                continue
            if sid is not None:
                return sid
        if unsure is not None:
            raise unsure
        return None
