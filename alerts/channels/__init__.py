"""Channels: how a rendered notification reaches a phone. One module per channel, one small interface.

    by_channel = senders({"twilio": tw, "aliyun": ali}, urls, cfg)   # per channel, providers in failover order
    sender = by_channel["sms"]
    sid = await sender.send(notification, since, drill, taken)  # since: wall time the send was claimed
    sid = await sender.find(notification, since, taken)        # after a crash: did the provider get it?

``taken(sid)`` says a sid is already another notification's (the log's), so a lookup never claims it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from collections.abc import Callable
from typing import Any, Protocol

from alerts.config import AlertsConfig, ProviderName
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


def senders(providers: dict[str, Any], urls: CallbackUrls, cfg: AlertsConfig) -> dict[str, Sender]:
    """Per channel, the configured providers in failover order (``alerts.providers``)."""
    from alerts.channels.failover import Failover

    per_channel: dict[str, list[Sender]] = {Channel.SMS.value: [], Channel.VOICE.value: []}
    for name in cfg.providers:
        for sender in REGISTRY[name](providers[name], urls, cfg):
            per_channel[sender.channel.value].append(sender)
    return {ch: Failover(s) for ch, s in per_channel.items() if s}


def _twilio(provider: Provider, urls: CallbackUrls, cfg: AlertsConfig) -> list[Sender]:
    from alerts.channels.sms import SmsSender
    from alerts.channels.voice import VoiceSender

    return [SmsSender(provider, urls, cfg), VoiceSender(provider, urls, cfg)]


def _aliyun(ali: Any, urls: CallbackUrls, cfg: AlertsConfig) -> list[Sender]:
    from alerts.channels.aliyun import AliyunSms, AliyunVoice

    return [AliyunSms(ali), AliyunVoice(ali, cfg.ack.digits)]


REGISTRY: dict[str, Callable[[Any, CallbackUrls, AlertsConfig], list[Sender]]] = {
    ProviderName.TWILIO: _twilio, ProviderName.ALIYUN: _aliyun}
