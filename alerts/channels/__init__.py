"""Channels: how a rendered notification reaches a phone. One module per channel, one small interface.

    sender = CHANNELS[Channel.SMS](provider, urls, cfg)
    sid = await sender.send(notification, since, drill, taken)  # since: wall time the send was claimed
    sid = await sender.find(notification, since, taken)        # after a crash: did the provider get it?

``taken(sid)`` says a sid is already another notification's (the log's), so a lookup never claims it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from alerts.config import AlertsConfig
from alerts.nflog import Notification, ref
from alerts.provider import Provider, Taken
from yujing.config.people import Channel


@dataclass(frozen=True)
class CallbackUrls:
    """Where Twilio calls us back. ``base`` is the public URL signatures are computed against.

    The notification travels as its ``ref`` (hex): nothing in our URLs needs percent-encoding, so no
    proxy or client can re-encode them into something the signature no longer matches.
    """

    base: str

    def status(self, key: str, drill: bool = False) -> str:
        return f"{self.base}/twilio/status?n={ref(key)}&k={'drill' if drill else 'real'}"

    def gather(self, key: str, drill: bool = False) -> str:
        return f"{self.base}/twilio/gather?n={ref(key)}&k={'drill' if drill else 'real'}"

    def sms(self) -> str:
        return f"{self.base}/twilio/sms"


class Sender(Protocol):
    channel: Channel

    async def send(self, n: Notification, since: datetime, drill: bool, taken: Taken | None = None) -> str: ...

    async def find(self, n: Notification, since: datetime, taken: Taken | None = None) -> str | None: ...


def senders(provider: Provider, urls: CallbackUrls, cfg: AlertsConfig) -> dict[str, Sender]:
    from alerts.channels.sms import SmsSender
    from alerts.channels.voice import VoiceSender

    return {c.channel.value: c for c in (SmsSender(provider, urls, cfg), VoiceSender(provider, urls, cfg))}
