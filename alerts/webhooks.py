"""The HTTP side: Twilio's callbacks in (signed), CAP documents out.

    POST /twilio/status?n=REF&k=real|drill    delivery / call status callback (REF = nflog.ref(key))
    POST /twilio/gather?n=REF&k=real|drill    the <Gather> action: Digits=1 confirms (叫应)
    POST /twilio/sms                          an inbound SMS: a reply of "1"/"收到"… confirms
    GET  /cap                                 index of CAP documents (JSON)
    GET  /cap/{identifier}.xml                one CAP 1.2 document
    GET  /cap/latest/{hazard}/{site}.xml      the latest for a site and hazard

Every POST must carry a valid ``X-Twilio-Signature`` over the *public* URL (``alerts.webhook.public_url``)
and the form parameters; forgeries get 403, are counted and logged (rate-limited), and change nothing.
A signature carries no time, so a captured request stays valid: each is acted on once, by the provider's
id of its event (:mod:`alerts.nflog.replays`, durable); a replay is answered as if it were fine (the provider must
not retry it), counted (``reason="replay"``) and changes nothing. A confirmation by SMS counts only for
what its sender was asked before the reply arrived; one from a number never asked is refused and counted
(``reason="not-asked"``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import Counter
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from alerts.cap import CapBook
from alerts.config import AlertsConfig
from alerts.pipeline import Pipeline
from alerts.nflog import ProviderEvents
from yujing.log import Limiter

log = logging.getLogger("yujing.alerts.webhooks")
REJECTED = Counter("yujing_alerts_webhook_rejected_total", "Webhook requests refused", ["reason"])
CONFIRMED = Counter("yujing_alerts_confirmations_total", "叫应 confirmations", ["via", "kind"])
_limiter = Limiter(60.0)
PROVIDER = "twilio"
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


class Webhooks:
    def __init__(self, cfg: AlertsConfig, auth_token: str, pipelines: dict[str, Pipeline], caps: CapBook) -> None:
        self.cfg = cfg
        self.validator = RequestValidator(auth_token)
        self._key = auth_token.encode()
        self.pipelines = pipelines
        self.caps = caps
        self.public_url = cfg.webhook.public_url.rstrip("/")
        self.port = cfg.webhook.port
        self.extra: list[Callable[[web.Application], None]] = []  # other providers' routes (aliyun_hooks)
        self._events: ProviderEvents | None = None

    @property
    def events(self) -> ProviderEvents:
        """The replay store, in the real notification log (opened once the pipelines exist)."""
        if self._events is None:
            self._events = self.pipelines["real"].nflog.provider_events
        return self._events

    def _refuse(self, request: web.Request, reason: str, form: dict[str, str], event: str = "") -> None:
        REJECTED.labels(reason=reason).inc()
        if _limiter.allow(("refuse", reason, request.path)):
            log.warning("refused a signed Twilio request", extra={"kv": {
                "path": request.path, "reason": reason, "event": event, "from": form.get("From", ""),
                "suppressed": _limiter.take_suppressed(("refuse", reason, request.path))}})

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.cfg.webhook.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/twilio/status", self._status)
        app.router.add_post("/twilio/gather", self._gather)
        app.router.add_post("/twilio/sms", self._sms)
        app.router.add_get("/cap", self._cap_index)
        app.router.add_get("/cap/latest/{hazard}/{site}.xml", self._cap_latest)
        app.router.add_get("/cap/{ident}.xml", self._cap_one)
        for add in self.extra:
            add(app)
        return app

    async def _verified(self, request: web.Request) -> dict[str, str] | None:
        form = {k: str(v) for k, v in (await request.post()).items()}
        url = self.base_url + request.raw_path  # as sent: re-encoding would break the signature
        signature = request.headers.get("X-Twilio-Signature", "")
        if signature and (self._signed_exactly(url, form, signature) or self.validator.validate(url, form, signature)):
            return form
        reason = "missing-signature" if not signature else "bad-signature"
        REJECTED.labels(reason=reason).inc()
        if _limiter.allow(("reject", reason, request.path)):
            log.warning("rejected an unsigned or forged Twilio request",
                        extra={"kv": {"path": request.path, "reason": reason, "from": form.get("From", ""),
                                      "peer": request.remote or ""}})
        return None

    def _signed_exactly(self, url: str, form: dict[str, str], signature: str) -> bool:
        """Twilio's signature (base64 HMAC-SHA1 of the URL and the sorted parameters) over exactly the URL we were
        called at: what Twilio sends. The library's validator, tried when this fails, also accepts the URL with
        or without its default port, computing two signatures and parsing the URL each time: a fan-out's
        receipts arrive thousands a second (py-spy: a seventh of the alerts' CPU)."""
        text = url + "".join(k + form[k] for k in sorted(form))
        mac = hmac.new(self._key, text.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(base64.b64encode(mac), signature.encode())  # bytes: any header compares

    def _pipeline(self, request: web.Request) -> Pipeline | None:
        return self.pipelines.get(request.query.get("k", "real"))

    async def _status(self, request: web.Request) -> web.Response:
        form = await self._verified(request)
        if form is None:
            return web.Response(status=403, text="invalid signature")
        p = self._pipeline(request)
        sid = form.get("MessageSid") or form.get("CallSid") or ""
        status = form.get("MessageStatus") or form.get("CallStatus") or ""
        if p is not None and sid and status:
            event = f"status:{sid}:{status}"  # each status of a message or call is reported once
            error = form.get("ErrorCode", "")
            if p is self.pipelines["real"]:  # the id and the status in one write, grouped with the turn's others
                try:
                    fresh = await p.receipts.on_status_once(PROVIDER, event, sid, status, error)
                except BaseException:  # recorded, then what it led to failed: the provider's retry must work
                    with contextlib.suppress(sqlite3.Error):
                        self.events.forget(PROVIDER, event)
                    raise
                if not fresh:
                    self._refuse(request, "replay", form, event)
                return web.Response(status=204)
            now = datetime.now(UTC)
            # as acting_on, with the id's commit grouped with the other callbacks' (a fan-out's receipts)
            if await self.pipelines["real"].nflog.group.many(self.events.seen_many, (PROVIDER, event, now)):
                self._refuse(request, "replay", form, event)
                return web.Response(status=204)
            try:
                await p.receipts.on_status(sid, status, error)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self.events.forget(PROVIDER, event)
                raise
        return web.Response(status=204)

    async def _gather(self, request: web.Request) -> web.Response:
        form = await self._verified(request)
        if form is None:
            return web.Response(status=403, text="invalid signature")
        call, digits = form.get("CallSid", ""), form.get("Digits", "")
        if not call:
            self._refuse(request, "no-event-id", form)
            return web.Response(status=400, text="no CallSid")
        event = f"gather:{call}:{digits}"  # the keys pressed on one call, acted on once
        with self.events.acting_on(PROVIDER, event, datetime.now(UTC)) as fresh:
            if not fresh:
                self._refuse(request, "replay", form, event)
                return web.Response(text=_EMPTY_TWIML, content_type="application/xml")
            p = self._pipeline(request)
            n = p.nflog.notifications.by_ref(request.query.get("n", "")) if p is not None else None
            r = VoiceResponse()
            lang, voice = self.cfg.voice_language, self.cfg.voice
            if n is not None and not n.ack:  # that call asked nothing: a keypress on it confirms nothing
                self._refuse(request, "not-asked", form, event)
                n = None
            if p is not None and n is not None and digits == self.cfg.ack.digits:
                if p.receipts.confirm(n, "voice"):
                    CONFIRMED.labels(via="voice", kind=p.kind).inc()
                r.say("已确认收到预警，谢谢。请按预案行动。", language=lang, voice=voice)
            else:
                r.say("未能确认，我们将再次与您联系。", language=lang, voice=voice)
        return web.Response(text=str(r), content_type="application/xml")

    async def _sms(self, request: web.Request) -> web.Response:
        form = await self._verified(request)
        if form is None:
            return web.Response(status=403, text="invalid signature")
        received_at = datetime.now(UTC)  # Twilio posts an inbound SMS as it receives it
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        if not sid:
            self._refuse(request, "no-event-id", form)
            return web.Response(status=400, text="no MessageSid")
        phone = form.get("From", "")
        body = form.get("Body", "").strip().lower().rstrip("。.!！")
        words = {w.lower() for w in self.cfg.ack.confirm_words}
        with self.events.acting_on(PROVIDER, f"sms:{sid}", received_at) as fresh:
            if not fresh:
                self._refuse(request, "replay", form, f"sms:{sid}")
            elif body not in words:
                log.info("inbound SMS is not a confirmation", extra={"kv": {"from": phone, "body": body[:40]}})
            elif not any(p.nflog.notifications.was_asked(phone, received_at) for p in self.pipelines.values()):
                self._refuse(request, "not-asked", form, f"sms:{sid}")
            else:
                for p in self.pipelines.values():
                    if p.receipts.confirm_reply(phone, "sms", received_at):
                        CONFIRMED.labels(via="sms", kind=p.kind).inc()
        return web.Response(text=_EMPTY_TWIML, content_type="application/xml")

    async def _cap_index(self, request: web.Request) -> web.Response:
        return web.json_response([{"identifier": i, "url": f"/cap/{i}.xml"} for i in self.caps.order])

    async def _cap_one(self, request: web.Request) -> web.Response:
        xml = self.caps.by_id.get(request.match_info["ident"])
        if xml is None:
            return web.Response(status=404, text="no such CAP document")
        return web.Response(text=xml, content_type="application/xml", charset="utf-8")

    async def _cap_latest(self, request: web.Request) -> web.Response:
        xml = self.caps.latest.get((request.match_info["hazard"], request.match_info["site"]))
        if xml is None:
            return web.Response(status=404, text="no CAP document for that hazard and site")
        return web.Response(text=xml, content_type="application/xml", charset="utf-8")

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Webhooks]:
        # a stop waits at most 5 s for requests in flight (aiohttp's default, 60 s, once held a stop for a keep-alive
        # connection whose request came in as the server closed)
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, self.cfg.webhook.host, self.cfg.webhook.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("alerts webhooks listening", extra={"kv": {"url": self.base_url}})
        try:
            yield self
        finally:
            await runner.cleanup()
