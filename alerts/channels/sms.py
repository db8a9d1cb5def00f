"""SMS: the body as rendered; the reply (叫应) arrives at the inbound-SMS webhook."""

from __future__ import annotations

import itertools
from datetime import datetime

from alerts.channels import CallbackUrls
from alerts.config import AlertsConfig
from alerts.nflog import Notification
from alerts.provider import Provider, Taken
from yujing.config.people import Channel


class SmsSender:
    channel = Channel.SMS
    name = "twilio"

    def __init__(self, provider: Provider, urls: CallbackUrls, cfg: AlertsConfig) -> None:
        self.provider = provider
        self.urls = urls
        # the sender pool: each long code sends 1 segment a second, so the SMS are dealt round the pool
        self.pool = list(cfg.twilio.from_numbers) or [cfg.twilio.from_number]
        self._next = itertools.cycle(self.pool)

    async def send(self, n: Notification, since: datetime, drill: bool, taken: Taken | None = None) -> str:
        return await self.provider.send_sms(n.phone, n.body, self.urls.status(n.key, drill), since, taken,
                                            from_=next(self._next))

    async def find(self, n: Notification, since: datetime, taken: Taken | None = None) -> str | None:
        return await self.provider.find_sms(n.phone, n.body, since, taken)
