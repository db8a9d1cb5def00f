"""A local stand-in for Alibaba Cloud's SMS (dysmsapi 2017-05-25) and voice (dyvmsapi 2017-05-25) APIs.

    async with AliyunStandIn(secrets={"LTAI…": "secret"}, signs={"中县应急"},
                             sms_templates={"SMS_1001": "${area}…"}, tts_templates={"TTS_2001": "…"}) as ali:
        # the real SDK, its endpoint pointed here (protocol http):
        client = Dysmsapi20170525Client(Config(access_key_id=…, access_key_secret=…, endpoint=ali.endpoint,
                                               protocol="http"))
        ali.push_to(sms_report=url, sms_up=url, voice_report=url)   # the console's "HTTP 批量推送" setting

It answers the RPC actions the alerts use, by the ``x-acs-action`` header, as the cloud does: ``SendSms``,
``SendBatchSms``, ``QuerySendDetails``, ``IvrCall``, ``SingleCallByTts``. Every request must carry a valid
ACS3-HMAC-SHA256 signature by a known AccessKey (``SignatureDoesNotMatch`` / ``InvalidAccessKeyId.NotFound``
otherwise). Business refusals come back as HTTP 200 with the provider's codes: ``isv.SMS_SIGNATURE_ILLEGAL``,
``isv.SMS_TEMPLATE_ILLEGAL``, ``isv.TEMPLATE_MISSING_PARAMETERS``, ``isv.PARAM_LENGTH_LIMIT``,
``isv.MOBILE_NUMBER_ILLEGAL``, ``isv.BUSINESS_LIMIT_CONTROL`` (per-number / per-callee frequency);
``Throttling.User`` (HTTP 400) when an API's QPS cap is passed. Limits: :class:`AliyunLimits`.

The far end plays each number's :class:`~simulators.twilio_records.Behaviour` (the same as the Twilio
stand-in's) and pushes JSON arrays as the cloud does: ``SmsReport`` (delivery), ``SmsUp`` (a reply),
``VoiceReport`` (a finished call, with ``dtmf`` the keys pressed). Aliyun's push carries no signature; the
URLs it is given hold the deployment's secret path token (see ``alerts/aliyun_hooks.py``).

``python -m simulators.aliyun --port 18833`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulators.aliyun_far_end import AliyunFarEnd, cst, local
from simulators.aliyun_limits import AliyunLimits, Ledger, Qps, signature_error
from simulators.standin import StandIn
from simulators.twilio_records import Behaviour

log = logging.getLogger("yujing.sim.aliyun")
VAR = re.compile(r"\$\{(\w+)\}")
PARAM_MAX = 35  # characters per template variable (the SMS console's rule for ordinary variables)
MOBILE = re.compile(r"^(?:\+?86)?1[3-9]\d{9}$")


@dataclass
class AliRecord:
    """One SMS or call as the stand-in took it."""

    id: str  # BizId (SMS) or CallId (voice)
    kind: str  # 'sms' | 'call'
    action: str
    to: str
    code: str
    params: dict[str, str]
    text: str  # the template with its parameters filled in: what the phone shows or says
    out_id: str = ""
    sign: str = ""
    at: float = 0.0  # scenario seconds (the stand-in's clock) when accepted
    status: str = "accepted"
    digits: str | None = None
    wall: float = field(default_factory=time.time)


def fill(template: str, params: dict[str, str]) -> str:
    return VAR.sub(lambda m: params.get(m.group(1), ""), template)


class AliyunStandIn(StandIn, AliyunFarEnd):
    title = "阿里云短信/语音模拟服务"
    log = log

    def __init__(self, *, secrets: dict[str, str], signs: set[str] | frozenset[str] = frozenset(),
                 sms_templates: dict[str, str] | None = None, tts_templates: dict[str, str] | None = None,
                 show_numbers: set[str] | frozenset[str] = frozenset(), limits: AliyunLimits | None = None,
                 behaviours: dict[str, Behaviour] | None = None, default: Behaviour | None = None,
                 clock: Any = None, host: str = "127.0.0.1", port: int = 0, verbose: bool = True) -> None:
        super().__init__()
        self.secrets = dict(secrets)
        self.signs = set(signs)
        self.sms_templates = dict(sms_templates or {})
        self.tts_templates = dict(tts_templates or {})
        self.show_numbers = set(show_numbers)  # empty: any caller number is ours
        self.limits = limits or AliyunLimits()
        self.behaviours = dict(behaviours or {})
        self.default = default or Behaviour()
        self.clock = clock
        self.host, self.port, self.verbose = host, port, verbose
        self.records: list[AliRecord] = []
        self.refused: list[tuple[str, str, str]] = []  # (action, to, code)
        self.pushes: list[tuple[str, list[dict[str, Any]], int]] = []  # (kind, body, HTTP status)
        self.urls: dict[str, str] = {}
        self.up = True  # False: every request fails with a dropped connection (an outage)
        self.lost: dict[str, int] = {}  # action -> how many more answers to drop after doing the work
        self._ledger = Ledger()
        self._qps = Qps()
        self._seq = 0

    # ---- lifecycle ------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/", self._rpc)

    def listening(self) -> str:
        return self.endpoint

    @property
    def endpoint(self) -> str:
        """What the SDK's ``Config.endpoint`` takes (host:port; with ``protocol='http'``)."""
        return f"{self.host}:{self.port}"

    def push_to(self, *, sms_report: str | None = None, sms_up: str | None = None,
                voice_report: str | None = None) -> None:
        for kind, url in (("SmsReport", sms_report), ("SmsUp", sms_up), ("VoiceReport", voice_report)):
            if url:
                self.urls[kind] = url

    # ---- queries for tests ------------------------------------------------------------------------
    def sms_to(self, phone: str) -> list[AliRecord]:
        return [r for r in self.records if r.kind == "sms" and r.to == local(phone)]

    def calls_to(self, phone: str) -> list[AliRecord]:
        return [r for r in self.records if r.kind == "call" and r.to == local(phone)]

    def _now(self) -> float:
        return self._now_s()

    # ---- RPC --------------------------------------------------------------------------------------
    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        if not self.up:
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=503)
        body = await request.read()
        query = dict(request.query)
        if body and request.content_type == "application/x-www-form-urlencoded":
            query.update({k: str(v) for k, v in (await request.post()).items()})
        headers = {k.lower(): v for k, v in request.headers.items()}
        action = headers.get("x-acs-action", query.get("Action", ""))
        bad = signature_error(request.method, request.path, dict(request.query), headers, body, self.secrets)
        if bad is not None:
            return await self._error(action, query, *bad)
        if not self._qps.allows(action, self.limits.qps.get(action)):
            return await self._error(action, query, 400, "Throttling.User",
                                     "Request was denied due to user flow control.")
        handler = {"SendSms": self._send_sms, "SendBatchSms": self._send_batch_sms,
                   "QuerySendDetails": self._query_send_details, "IvrCall": self._ivr_call,
                   "SingleCallByTts": self._single_call_by_tts}.get(action)
        if handler is None:
            return await self._error(action, query, 404, "InvalidAction.NotFound",
                                     f"Specified api is not found: {action}")
        answer = await handler(query)
        await self._notify()
        if self.lost.get(action, 0) > 0 and answer.get("Code") == "OK":  # done, but the answer never arrives
            self.lost[action] -= 1
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=503)
        return web.json_response({"RequestId": str(uuid.uuid4()).upper(), **answer})

    def lose_answers(self, action: str, n: int = 1) -> None:
        """The next ``n`` successful ``action`` requests are carried out but their answers are lost: the
        ambiguous failure after which a client must not send again blind."""
        self.lost[action] = self.lost.get(action, 0) + n

    async def _error(self, action: str, query: dict[str, str], status: int, code: str, message: str) -> web.Response:
        self.refused.append((action, query.get("PhoneNumbers", query.get("CalledNumber", "")), code))
        await self._notify()
        log.info("stand-in refused %s: %s", action, code)
        return web.json_response({"RequestId": str(uuid.uuid4()).upper(), "Code": code, "Message": message,
                                  "HostId": self.endpoint, "Recommend": ""}, status=status)

    def _refuse(self, action: str, to: str, code: str, message: str) -> dict[str, str]:
        self.refused.append((action, to, code))
        if self.verbose:
            log.info("阿里云模拟服务拒绝 %s → %s：%s", action, to, code)
        return {"Code": code, "Message": message}

    def _check_template(self, action: str, to: str, templates: dict[str, str], code: str,
                        raw: str) -> tuple[dict[str, str], dict[str, str] | None]:
        """(params, refusal or None) for template ``code`` with JSON parameters ``raw``."""
        if code not in templates:
            return {}, self._refuse(action, to, "isv.SMS_TEMPLATE_ILLEGAL", "模板不合法(不存在或被拉黑)")
        try:
            params = json.loads(raw or "{}")
        except ValueError:
            return {}, self._refuse(action, to, "isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            return {}, self._refuse(action, to, "isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        missing = set(VAR.findall(templates[code])) - set(params)
        if missing:
            return {}, self._refuse(action, to, "isv.TEMPLATE_MISSING_PARAMETERS", f"模板缺少变量 {sorted(missing)}")
        long = [k for k, v in params.items() if len(v) > PARAM_MAX]
        if long:
            return {}, self._refuse(action, to, "isv.PARAM_LENGTH_LIMIT", f"参数超出长度限制 {long}")
        return params, None

    def _next_id(self, kind: str) -> str:
        self._seq += 1
        if kind == "sms":
            return f"{int(self._now())}{self._seq:08d}^0"
        return f"{100000000000 + self._seq}^{int(self._now()) % 10 ** 10}"

    async def _send_sms(self, q: dict[str, str]) -> dict[str, Any]:
        phones = [p for p in q.get("PhoneNumbers", "").split(",") if p]
        return self._sms(q, "SendSms", phones, [q.get("SignName", "")] * len(phones),
                         [q.get("TemplateParam", "")] * len(phones))

    async def _send_batch_sms(self, q: dict[str, str]) -> dict[str, Any]:
        try:
            phones = json.loads(q.get("PhoneNumberJson", "[]"))
            signs = json.loads(q.get("SignNameJson", "[]"))
            params = json.loads(q.get("TemplateParamJson", "[]"))
        except ValueError:
            return self._refuse("SendBatchSms", "", "isv.INVALID_JSON_PARAM", "JSON参数不合法")
        if not (len(phones) == len(signs) == len(params)) or len(phones) > 100:
            return self._refuse("SendBatchSms", "", "isv.INVALID_PARAMETERS", "号码、签名、参数个数不一致或超过100")
        return self._sms(q, "SendBatchSms", phones, signs, [json.dumps(p, ensure_ascii=False) for p in params])

    def _sms(self, q: dict[str, str], action: str, phones: list[str], signs: list[str],
             raws: list[str]) -> dict[str, Any]:
        """One request, all or nothing (as the cloud does: one bad number refuses the request)."""
        if not phones or len(phones) > 1000:
            return self._refuse(action, "", "isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制")
        code = q.get("TemplateCode", "")
        accepted: list[tuple[str, str, dict[str, str]]] = []
        now = self._now()
        for phone, sign, raw in zip(phones, signs, raws, strict=True):
            if not MOBILE.match(phone):
                return self._refuse(action, phone, "isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
            if sign not in self.signs:
                return self._refuse(action, phone, "isv.SMS_SIGNATURE_ILLEGAL", "签名不合法(不存在或被拉黑)")
            params, refusal = self._check_template(action, phone, self.sms_templates, code, raw)
            if refusal:
                return refusal
            if not self._ledger.allows(f"sms|{sign}|{code}|{local(phone)}", self.limits.sms_per_number, now):
                return self._refuse(action, phone, "isv.BUSINESS_LIMIT_CONTROL", "触发号码天级流控")
            accepted.append((local(phone), sign, params))
        biz = self._next_id("sms")
        for phone, sign, params in accepted:
            self._ledger.use(f"sms|{sign}|{code}|{phone}", now)
            text = f"【{sign}】" + fill(self.sms_templates[code], params)
            rec = AliRecord(biz, "sms", action, phone, code, params, text, out_id=q.get("OutId", ""), sign=sign, at=now)
            self.records.append(rec)
            if self.verbose:
                log.info("收到短信发送请求：发往 %s，内容：%s", phone, rec.text)
            self._spawn(self._play_sms(rec))
        return {"Code": "OK", "Message": "OK", "BizId": biz}

    async def _query_send_details(self, q: dict[str, str]) -> dict[str, Any]:
        phone, biz = local(q.get("PhoneNumber", "")), q.get("BizId", "")
        rows = [r for r in self.records if r.kind == "sms" and r.to == phone and (not biz or r.id == biz)]
        size, page = int(q.get("PageSize", "10")), int(q.get("CurrentPage", "1"))
        part = rows[(page - 1) * size:page * size]
        return {"Code": "OK", "Message": "OK", "TotalCount": str(len(rows)), "SmsSendDetailDTOs": {"SmsSendDetailDTO": [
            {"PhoneNum": r.to, "Content": r.text, "OutId": r.out_id, "TemplateCode": r.code,
             "SendStatus": 3 if r.status == "delivered" else 2 if r.status == "failed" else 1,
             "ErrCode": "DELIVERED" if r.status == "delivered" else "", "SendDate": cst(r.at),
             "ReceiveDate": cst(r.at)} for r in part]}}

    async def _ivr_call(self, q: dict[str, str]) -> dict[str, Any]:
        keys = {q[k]: q.get(k[:-3] + "Code", "") for k in q if re.fullmatch(r"MenuKeyMap\.\d+\.Key", k)}
        if not keys:
            return self._refuse("IvrCall", q.get("CalledNumber", ""), "isv.INVALID_PARAMETERS",
                                "MenuKeyMap 不能为空")
        return self._call(q, "IvrCall", q.get("StartCode", ""), q.get("StartTtsParams", ""), keys)

    async def _single_call_by_tts(self, q: dict[str, str]) -> dict[str, Any]:
        return self._call(q, "SingleCallByTts", q.get("TtsCode", ""), q.get("TtsParam", ""), {})

    def _call(self, q: dict[str, str], action: str, code: str, raw: str, keys: dict[str, str]) -> dict[str, Any]:
        phone = q.get("CalledNumber", "")
        if not MOBILE.match(phone):
            return self._refuse(action, phone, "isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if self.show_numbers and q.get("CalledShowNumber", "") not in self.show_numbers:
            return self._refuse(action, phone, "isv.DISPLAY_NUMBER_ILLEGAL", "外显号码不合法")
        params, refusal = self._check_template(action, phone, self.tts_templates, code, raw)
        if refusal:
            return refusal
        for key_code in keys.values():
            if key_code and key_code not in self.tts_templates and not key_code.endswith(".wav"):
                return self._refuse(action, phone, "isv.SMS_TEMPLATE_ILLEGAL", f"按键模板不合法 {key_code}")
        now, callee = self._now(), local(phone)
        if not self._ledger.allows(f"call|{callee}", self.limits.voice_per_callee, now):
            return self._refuse(action, phone, "isv.BUSINESS_LIMIT_CONTROL", "触发流控：同一被叫号码呼叫频率超限")
        self._ledger.use(f"call|{callee}", now)
        rec = AliRecord(self._next_id("call"), "call", action, callee, code, params,
                        fill(self.tts_templates[code], params), out_id=q.get("OutId", ""), at=now)
        self.records.append(rec)
        if self.verbose:
            log.info("收到语音电话请求（%s）：呼叫 %s，内容：%s", action, callee, rec.text)
        self._spawn(self._play_call(rec, set(keys)))
        return {"Code": "OK", "Message": "OK", "CallId": rec.id}

async def _main(args: argparse.Namespace) -> None:
    templates = json.loads(open(args.templates, encoding="utf-8").read()) if args.templates else {}
    async with AliyunStandIn(secrets={args.access_key_id: args.access_key_secret}, signs=set(args.sign),
                             sms_templates=templates.get("sms", {}), tts_templates=templates.get("tts", {}),
                             host=args.host, port=args.port) as s:
        print(f"Alibaba Cloud stand-in on http://{s.endpoint}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A local stand-in for Alibaba Cloud's SMS and voice APIs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18833)
    parser.add_argument("--access-key-id", default="LTAIstandin")
    parser.add_argument("--access-key-secret", default="standin-secret")
    parser.add_argument("--sign", action="append", default=[], help="an approved signature (签名)")
    parser.add_argument("--templates", help='JSON file {"sms": {code: text}, "tts": {code: text}}')
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))
