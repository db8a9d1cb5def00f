"""The phone network's side of the Twilio stand-in: the far end of each message and call.

Each SMS is sent, then delivered (or not) and perhaps answered; each call rings, is answered (or not),
its TwiML is heard and a key may be pressed, per the number's :class:`Behaviour`. Everything it posts
back — status callbacks, the TwiML fetch, the ``<Gather>`` action, inbound SMS to ``sms_webhook`` —
carries a correct ``X-Twilio-Signature``, as Twilio's do. A mixin of
:class:`~simulators.twilio.TwilioStandIn`, which holds the records and the HTTP session it uses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yarl

from yujing.http import Client as Poster, HttpError
from simulators.twilio_records import Behaviour, Record, parse_twiml

log = logging.getLogger("yujing.sim.twilio")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Signer:
    """``X-Twilio-Signature`` as Twilio computes it: base64 HMAC-SHA1, keyed by the auth token, of the URL followed
    by each form parameter's name and value, sorted by name. The twilio library's ``RequestValidator`` computes
    the same, but for any kind of multi-dict and checking two URL variants; the stand-in signs a plain dict tens
    of thousands of times in a fan-out (the alerts side still verifies with the library's validator)."""

    def __init__(self, auth_token: str) -> None:
        self.key = auth_token.encode()

    def sign(self, url: str, params: dict[str, str]) -> str:
        text = url + "".join(k + params[k] for k in sorted(params))
        return base64.b64encode(hmac.new(self.key, text.encode(), hashlib.sha1).digest()).decode()


def new_sid(prefix: str) -> str:
    """A Twilio-shaped sid: two letters and 32 hex digits (uuid4's randomness, without building a UUID)."""
    return prefix + os.urandom(16).hex()


class FarEnd:
    """The people at the numbers. The stand-in sets these attributes (see its ``__init__``)."""

    account_sid: str
    behaviours: dict[str, Behaviour]
    default: Behaviour
    sms_webhook: str | None  # where inbound SMS go (a number's "A message comes in" URL)
    clock: Any  # anything with async sleep(scenario_seconds); None: real time
    verbose: bool
    limits: Any  # TwilioLimits
    inbound: list[dict[str, str]]  # inbound SMS posted to the webhook
    callbacks: list[tuple[str, dict[str, str], int]]  # (url, params, HTTP status answered)
    _signer: Signer
    _session: aiohttp.ClientSession | None  # the TwiML fetch, and posts to https URLs
    _poster: Poster  # posts to http URLs

    def set_behaviour(self, phone: str, behaviour: Behaviour) -> None:
        self.behaviours[phone] = behaviour

    def behaviour(self, phone: str) -> Behaviour:
        return self.behaviours.get(phone, self.default)

    async def _notify(self) -> None:
        """Something changed (the stand-in wakes whoever waits on it)."""

    async def _sleep(self, scenario_s: float) -> None:
        raise NotImplementedError  # the stand-in's (simulators.standin)

    async def _status(self, rec: Record, status: str, **extra: str) -> None:
        rec.status = status
        rec.events.append((time.time(), status))
        await self._notify()
        event = "completed" if status in ("completed", "no-answer", "busy", "failed", "canceled") else \
            {"in-progress": "answered"}.get(status, status)
        if rec.kind == "call" and event not in rec.callback_events:
            return
        if rec.status_callback:
            params = {"AccountSid": self.account_sid, "To": rec.to, "From": rec.from_, **extra}
            if rec.kind == "sms":
                params.update({"MessageSid": rec.sid, "SmsSid": rec.sid, "MessageStatus": status, "SmsStatus": status})
                if status in ("undelivered", "failed"):
                    params["ErrorCode"] = "30003"
            else:
                params.update({"CallSid": rec.sid, "CallStatus": status})
            await self.post_signed(rec.status_callback, params)

    def _now_s(self) -> float:
        raise NotImplementedError  # the stand-in's (simulators.standin)

    async def _play_sms(self, rec: Record) -> None:
        b = self.behaviour(rec.to)
        try:
            if rec.queued_s > self.limits.queue_s:
                await self._status(rec, "failed", ErrorCode="30001")  # queue overflow
                return
            await self._sleep(rec.queued_s)
            rec.sent_at = self._now_s()
            await self._sleep(0.2)
            await self._status(rec, "sent")
            await self._sleep(0.3)
            await self._status(rec, "delivered" if b.sms_delivered else "undelivered")
            if b.sms_delivered and b.sms_reply is not None:
                await self._sleep(b.reply_after_s)
                await self.send_inbound_sms(rec.to, b.sms_reply, to=rec.from_)
        except Exception:
            log.exception("stand-in: playing an SMS failed", extra={"kv": {"sid": rec.sid}})

    async def send_inbound_sms(self, from_: str, body: str, to: str = "") -> int:
        """A person texts the service number: POST to :attr:`sms_webhook` like Twilio does. Returns the status."""
        params = {"MessageSid": new_sid("SM"), "AccountSid": self.account_sid, "From": from_,
                  "To": to, "Body": body, "NumMedia": "0", "SmsStatus": "received"}
        self.inbound.append(params)
        if self.verbose:
            log.info("模拟村民回复短信：%s 回复“%s”", from_, body)
        await self._notify()
        if not self.sms_webhook:
            log.warning("stand-in: an inbound SMS but no sms_webhook is set; dropped")
            return 0
        return await self.post_signed(self.sms_webhook, params)

    async def _play_call(self, rec: Record) -> None:
        b = self.behaviour(rec.to)
        base = {"CallSid": rec.sid, "AccountSid": self.account_sid, "From": rec.from_, "To": rec.to,
                "Direction": "outbound-api", "ApiVersion": "2010-04-01"}
        try:
            await self._sleep(rec.queued_s)
            rec.sent_at = self._now_s()
            await self._status(rec, "ringing")
            await self._sleep(b.ring_s)
            if not b.answer:
                await self._status(rec, "no-answer")
                return
            await self._status(rec, "in-progress")
            twiml = rec.twiml
            if rec.url:
                twiml = await self._fetch_twiml(rec.url, {**base, "CallStatus": "in-progress"}, rec)
            says, gather = parse_twiml(twiml)
            rec.twiml = twiml
            rec.body = "".join(says)
            if self.verbose and rec.body:
                log.info("模拟电话接通：%s 听到“%s”", rec.to, rec.body)
            if gather is not None and b.digits is not None:
                await self._sleep(b.press_after_s)
                rec.digits = b.digits
                rec.events.append((time.time(), f"pressed {b.digits}"))
                await self._notify()
                if self.verbose:
                    log.info("模拟按键确认：%s 按下 %s", rec.to, b.digits)
                action = gather.get("action") or rec.url
                if action:
                    await self.post_signed(action, {**base, "CallStatus": "in-progress", "Digits": b.digits})
            await self._sleep(1.0)
            await self._status(rec, "completed", CallDuration="30")
        except Exception:
            log.exception("stand-in: playing a call failed", extra={"kv": {"sid": rec.sid}})

    async def _fetch_twiml(self, url: str, params: dict[str, str], rec: Record) -> str:
        assert self._session is not None
        headers = {**FORM, "X-Twilio-Signature": self._signer.sign(url, params)}
        async with self._session.post(yarl.URL(url, encoded=True), data=urlencode(params).encode(),
                                      headers=headers) as resp:
            text = await resp.text()
            self.callbacks.append((url, params, resp.status))
            return text if resp.status == 200 else ""

    async def post_signed(self, url: str, params: dict[str, str], signature: str | None = None) -> int:
        """POST ``params`` form-encoded to ``url`` signed like Twilio (or with a given, e.g. forged, signature)."""
        assert self._session is not None
        sig = signature if signature is not None else self._signer.sign(url, params)
        body, headers = urlencode(params).encode(), {**FORM, "X-Twilio-Signature": sig}
        try:
            if url.startswith("http://"):  # the URL exactly as signed; kept-alive connections (yujing/http.py)
                status, _ = await self._poster.post(url, body, headers)
            else:
                async with self._session.post(yarl.URL(url, encoded=True), data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
        except (HttpError, OSError, TimeoutError) as exc:
            log.info("stand-in: callback failed", extra={"kv": {"url": url, "error": repr(exc)}})
            status = 0
        except aiohttp.ClientError as exc:
            log.info("stand-in: callback failed", extra={"kv": {"url": url, "error": repr(exc)}})
            status = 0
        self.callbacks.append((url, params, status))
        await self._notify()
        return status
