"""Voice: TwiML ``<Say>`` in Mandarin, inside a ``<Gather>`` whose keypress confirms (叫应).

The TwiML travels inline with the call request (no fetch from us, so a restart between the call and
its answer loses nothing); the ``<Gather>`` action and the status callback carry the notification key.
"""

from __future__ import annotations

from datetime import datetime

from twilio.twiml.voice_response import VoiceResponse

from alerts.channels import CallbackUrls
from alerts.config import AlertsConfig
from alerts.nflog import Notification
from alerts.provider import Provider, Taken
from yujing.config.people import Channel


def twiml(n: Notification, urls: CallbackUrls, language: str, voice: str, drill: bool, repeat: int = 2) -> str:
    r = VoiceResponse()
    if n.ack:
        g = r.gather(num_digits=1, action=urls.gather(n.key, drill), method="POST", timeout=10)
        for _ in range(repeat):
            g.say(n.body, language=language, voice=voice)
        r.say("未收到按键确认，我们将再次呼叫。", language=language, voice=voice)
    else:
        for _ in range(repeat):
            r.say(n.body, language=language, voice=voice)
    return str(r)


class VoiceSender:
    channel = Channel.VOICE
    name = "twilio"

    def __init__(self, provider: Provider, urls: CallbackUrls, cfg: AlertsConfig) -> None:
        self.provider = provider
        self.urls = urls
        self.language = cfg.voice_language
        self.voice = cfg.voice

    async def send(self, n: Notification, since: datetime, drill: bool, taken: Taken | None = None) -> str:
        return await self.provider.call(n.phone, twiml(n, self.urls, self.language, self.voice, drill),
                                        self.urls.status(n.key, drill), since, taken)

    async def find(self, n: Notification, since: datetime, taken: Taken | None = None) -> str | None:
        return await self.provider.find_call(n.phone, since, taken)
