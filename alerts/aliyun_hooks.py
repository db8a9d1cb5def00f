"""Alibaba Cloud's HTTP batch pushes in, normalised into the pipeline's own events.

    POST /aliyun/{token}/sms-report     SmsReport: [{phone_number, success, err_code, biz_id, out_id, …}]
    POST /aliyun/{token}/sms-up         SmsUp: [{phone_number, content, sign_name, dest_code, sequence_id, …}]
    POST /aliyun/{token}/voice-report   VoiceReport: [{call_id, status_code, dtmf, out_id, callee, …}]

The cloud signs none of these; the push URLs configured in its console carry ``alerts.aliyun.push_token``, a
secret compared in constant time (a wrong or missing token: 403, counted, logged rate-limited, nothing
changes). Each body is a JSON array of several receipts; the answer the cloud expects is
``{"code": 0, "msg": "接收成功"}`` (HTTP 200), and a 5xx makes it push again later (1, 5, 10 minutes). The
pushes are not idempotent: a receipt pushed twice changes nothing the second time (a confirmation is
recorded once; a status is a state, not a counter).

A notification is found by ``out_id`` (its ref; 15 characters for calls) in either log (real or drill); a
reply (SmsUp) by the phone that sent it, as Twilio's inbound SMS.
"""

from __future__ import annotations

import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from alerts.config import AlertsConfig
from alerts.nflog import Notification
from alerts.pipeline import Pipeline
from alerts.nflog import ProviderEvents
from alerts.webhooks import CONFIRMED, REJECTED
from yujing.log import Limiter

log = logging.getLogger("yujing.alerts.aliyun_hooks")
_limiter = Limiter(60.0)
OK = {"code": 0, "msg": "接收成功"}
ANSWERED = "200000"  # VoiceReport status_code: the callee answered and heard the message


class AliyunHooks:
    def __init__(self, cfg: AlertsConfig, pipelines: dict[str, Pipeline], token: str) -> None:
        self.cfg = cfg
        self.pipelines = pipelines
        self.token = token
        self._replay: ProviderEvents | None = None

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/aliyun/{token}/sms-report", self._sms_report)
        app.router.add_post("/aliyun/{token}/sms-up", self._sms_up)
        app.router.add_post("/aliyun/{token}/voice-report", self._voice_report)

    def urls(self, base: str) -> dict[str, str]:
        """What to set in the console's HTTP batch push settings."""
        root = f"{base}/aliyun/{self.token}"
        return {"sms_report": f"{root}/sms-report", "sms_up": f"{root}/sms-up", "voice_report": f"{root}/voice-report"}

    async def _receipts(self, request: web.Request) -> list[dict[str, Any]] | None:
        given = request.match_info.get("token", "")
        if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
            REJECTED.labels(reason="aliyun-bad-token").inc()
            if _limiter.allow(("aliyun-token", request.path.rsplit("/", 1)[-1])):
                log.warning("rejected an Alibaba Cloud push with a wrong token",
                            extra={"kv": {"peer": request.remote or "", "kind": request.path.rsplit("/", 1)[-1]}})
            return None
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
            REJECTED.labels(reason="aliyun-malformed").inc()
            if _limiter.allow("aliyun-malformed"):
                log.warning("an Alibaba Cloud push that is not a JSON array of receipts",
                            extra={"kv": {"path": request.path}})
            return []
        return body

    def _find(self, out_id: str) -> tuple[Pipeline, Notification] | None:
        for p in self.pipelines.values():
            n = p.nflog.notifications.by_ref(out_id) if out_id else None
            if n is not None:
                return p, n
        return None

    async def _sms_report(self, request: web.Request) -> web.Response:
        receipts = await self._receipts(request)
        if receipts is None:
            return web.Response(status=403, text="forbidden")
        for r in receipts:
            status = "delivered" if r.get("success") is True else "undelivered"
            error = "" if status == "delivered" else str(r.get("err_code", ""))
            sid = f"ali-sms:{r.get('biz_id', '')}:{r.get('phone_number', '')}"  # one of a batch: BizId + number
            if any([await p.on_status(sid, status, error) is not None for p in self.pipelines.values()]):
                continue
            found = self._find(str(r.get("out_id", "")))  # one found again after a lost answer: by its OutId
            if found is not None and found[1].sid:
                await found[0].on_status(found[1].sid, status, error)
        return web.json_response(OK)

    async def _sms_up(self, request: web.Request) -> web.Response:
        receipts = await self._receipts(request)
        if receipts is None:
            return web.Response(status=403, text="forbidden")
        words = {w.lower() for w in self.cfg.ack.confirm_words}
        received_at = datetime.now(UTC)  # send_time has whole seconds only: too coarse to compare with a request's
        for r in receipts:
            phone = str(r.get("phone_number", ""))
            phone = "+86" + phone if len(phone) == 11 and phone.startswith("1") else phone
            text = str(r.get("content", "")).strip().lower().rstrip("。.!！")
            # one uplink message, acted on once (alerts/replay.py): a push repeated, or replayed, changes nothing
            event = f"sms-up:{r.get('sequence_id', '')}:{phone}:{r.get('send_time', '')}"
            with self._events().acting_on("aliyun", event, received_at) as fresh:
                if not fresh:
                    REJECTED.labels(reason="replay").inc()
                elif text not in words:
                    log.info("inbound SMS is not a confirmation", extra={"kv": {"from": phone, "body": text[:40]}})
                elif not any(p.nflog.notifications.was_asked(phone, received_at) for p in self.pipelines.values()):
                    REJECTED.labels(reason="not-asked").inc()
                    if _limiter.allow("aliyun-not-asked"):
                        log.warning("a confirmation from a number never asked", extra={"kv": {"from": phone}})
                else:
                    for p in self.pipelines.values():
                        if p.confirm_reply(phone, "sms", received_at):
                            CONFIRMED.labels(via="sms", kind=p.kind).inc()
        return web.json_response(OK)

    def _events(self) -> ProviderEvents:
        if self._replay is None:
            self._replay = self.pipelines["real"].nflog.provider_events
        return self._replay

    async def _voice_report(self, request: web.Request) -> web.Response:
        receipts = await self._receipts(request)
        if receipts is None:
            return web.Response(status=403, text="forbidden")
        for r in receipts:
            found = self._find(str(r.get("out_id", "")))
            if found is None:
                continue
            p, n = found
            if n.status == "sending":  # its answer was lost: the receipt is the proof the call was placed
                now = p.clock.now()
                p.nflog.notifications.sent(n.key, f"ali-call:{r.get('call_id', '')}", now)
                p.nflog.timeline.add(now, n.warning_id, n.phone, "reconciled", {"key": n.key, "by": "VoiceReport"})
                n = p.nflog.notifications.get(n.key) or n
            if self.cfg.ack.digits in str(r.get("dtmf", "") or "") and n.ack and p.confirm(n, "voice"):
                CONFIRMED.labels(via="voice", kind=p.kind).inc()
            if n.sid:
                answered = str(r.get("status_code", "")) == ANSWERED
                await p.on_status(n.sid, "completed" if answered else "no-answer",
                                  "" if answered else str(r.get("status_code", "")))
        return web.json_response(OK)
