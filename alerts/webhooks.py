"""The HTTP side: Twilio's callbacks in (signed), CAP documents out.

    POST /twilio/status?n=REF&k=real|drill    delivery / call status callback (REF = nflog.ref(key))
    POST /twilio/gather?n=REF&k=real|drill    the <Gather> action: Digits=1 confirms (叫应)
    POST /twilio/sms                          an inbound SMS: a reply of "1"/"收到"… confirms
    GET  /cap                                 index of CAP documents (JSON)
    GET  /cap/{identifier}.xml                one CAP 1.2 document
    GET  /cap/latest/{hazard}/{site}.xml      the latest for a site and hazard

Every POST must carry a valid ``X-Twilio-Signature`` over the *public* URL (``alerts.webhook.public_url``)
and the form parameters; forgeries get 403, are counted and logged (rate-limited), and change nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import Counter
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from alerts.cap import CapBook
from alerts.config import AlertsConfig
from alerts.pipeline import Pipeline
from yujing.log import Limiter

log = logging.getLogger("yujing.alerts.webhooks")
REJECTED = Counter("yujing_alerts_webhook_rejected_total", "Webhook requests refused", ["reason"])
CONFIRMED = Counter("yujing_alerts_confirmations_total", "叫应 confirmations", ["via", "kind"])
_limiter = Limiter(60.0)


class Webhooks:
    def __init__(self, cfg: AlertsConfig, auth_token: str, pipelines: dict[str, Pipeline], caps: CapBook) -> None:
        self.cfg = cfg
        self.validator = RequestValidator(auth_token)
        self.pipelines = pipelines
        self.caps = caps
        self.public_url = cfg.webhook.public_url.rstrip("/")
        self.port = cfg.webhook.port
        self.extra: list[Callable[[web.Application], None]] = []  # other providers' routes (aliyun_hooks)

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
        if signature and self.validator.validate(url, form, signature):
            return form
        reason = "missing-signature" if not signature else "bad-signature"
        REJECTED.labels(reason=reason).inc()
        if _limiter.allow(("reject", reason, request.path)):
            log.warning("rejected an unsigned or forged Twilio request",
                        extra={"kv": {"path": request.path, "reason": reason, "from": form.get("From", ""),
                                      "peer": request.remote or ""}})
        return None

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
            await p.on_status(sid, status, form.get("ErrorCode", ""))
        return web.Response(status=204)

    async def _gather(self, request: web.Request) -> web.Response:
        form = await self._verified(request)
        if form is None:
            return web.Response(status=403, text="invalid signature")
        p = self._pipeline(request)
        n = p.nflog.by_ref(request.query.get("n", "")) if p is not None else None
        r = VoiceResponse()
        lang, voice = self.cfg.voice_language, self.cfg.voice
        if p is not None and n is not None and form.get("Digits", "") == self.cfg.ack.digits:
            if p.confirm(n, "voice"):
                CONFIRMED.labels(via="voice", kind=p.kind).inc()
            r.say("已确认收到预警，谢谢。请按预案行动。", language=lang, voice=voice)
        else:
            r.say("未能确认，我们将再次与您联系。", language=lang, voice=voice)
        return web.Response(text=str(r), content_type="application/xml")

    async def _sms(self, request: web.Request) -> web.Response:
        form = await self._verified(request)
        if form is None:
            return web.Response(status=403, text="invalid signature")
        phone = form.get("From", "")
        body = form.get("Body", "").strip().lower().rstrip("。.!！")
        words = {w.lower() for w in self.cfg.ack.confirm_words}
        if body in words:
            for p in self.pipelines.values():
                done = p.confirm_reply(phone, "sms")
                if done:
                    CONFIRMED.labels(via="sms", kind=p.kind).inc()
        else:
            log.info("inbound SMS is not a confirmation", extra={"kv": {"from": phone, "body": body[:40]}})
        return web.Response(text='<?xml version="1.0" encoding="UTF-8"?><Response/>', content_type="application/xml")

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
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.cfg.webhook.host, self.cfg.webhook.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("alerts webhooks listening", extra={"kv": {"url": self.base_url}})
        try:
            yield self
        finally:
            await runner.cleanup()
