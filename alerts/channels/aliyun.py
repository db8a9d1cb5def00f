"""Alibaba Cloud: SMS through dysmsapi 2017-05-25, voice through dyvmsapi 2017-05-25, with the official SDKs.

    async with aliyun_provider(cfg.aliyun) as ali:
        sms, voice = AliyunSms(ali, drill_ok), AliyunVoice(ali)

Only approved templates go out: a notification carries its template's name and parameters (``template``,
rendered from the same definition as Twilio's full text), mapped to the codes in ``alerts.aliyun.templates``;
a drill uses the ``drill_*`` codes (texts behind 【演练】) and is refused here if there are none. ``OutId`` is
the notification's ref (its first 15 characters for calls, the API's limit), so the pushed receipts find it.

Errors: a business refusal (``isv.*``: template, signature, frequency) or a signature/credential error is
final for this provider (the failover tries the next); throttling (``Throttling*``) and ``isp.*`` are
retried with backoff; a connection never made is an outage (nothing was sent); a timeout is ambiguous and
the SMS is looked up by ``OutId`` (``QuerySendDetails``) before anything else. The send APIs have no
idempotency of their own. The voice API has no lookup by ``OutId``: an ambiguous call is left to the
dispatcher's deferral, never repeated blind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import aiohttp
from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client as SmsClient
from alibabacloud_dyvmsapi20170525 import models as vms_models
from alibabacloud_dyvmsapi20170525.client import Client as VmsClient
from alibabacloud_tea_openapi.models import Config
from prometheus_client import Counter

from alerts.config import AliyunConfig
from alerts.nflog import Notification, ref
from alerts.provider import PROVIDER_ERRORS, ProviderError, Taken
from yujing.config.people import Channel

log = logging.getLogger("yujing.alerts.aliyun")
T = TypeVar("T")
CUT = Counter("yujing_alerts_template_params_cut_total", "Template parameters cut to the provider's cap", ["name"])
CST = timezone(timedelta(hours=8))
VOICE_OUT_ID = 15  # IvrCall/SingleCallByTts take an OutId of 1-15 bytes


@dataclass
class Aliyun:
    cfg: AliyunConfig
    sms: SmsClient
    voice: VmsClient

    def codes(self, n: Notification, drill: bool) -> tuple[str, dict[str, str]]:
        """(approved code, parameters cut to the cap) for ``n``; ProviderError if nothing approved carries it."""
        spec = json.loads(n.template or "{}")
        name, params = spec.get("name", ""), dict(spec.get("params", {}))
        approved = self.cfg.templates.get(name)
        field = ("drill_" if drill else "") + n.channel
        code = getattr(approved, field, None) if approved else None
        if not code:
            PROVIDER_ERRORS.labels(reason="no-approved-template").inc()
            raise ProviderError(f"aliyun: no approved {field} template for {name or n.key}", code="no-template")
        cap = self.cfg.param_max
        for k, v in params.items():
            if len(v) > cap:  # evidence, titles: the provider refuses the whole message over one long variable
                CUT.labels(name=k).inc()
                params[k] = v[:cap - 1] + "…"
        return code, params

    async def retrying(self, what: str, op: Callable[[], Awaitable[T]],
                       already: Callable[[], Awaitable[T | None]] | None = None) -> T:
        delay, ambiguous, reason = self.cfg.backoff_s, False, ""
        for attempt in range(self.cfg.retries + 1):
            if ambiguous and already is not None:
                with contextlib.suppress(Exception):
                    found = await already()
                    if found is not None:
                        return found
            try:
                return await op()
            except _Refused as exc:
                code = exc.code
                if not (code.startswith("Throttling") or code.startswith("isp.") or code == "ServiceUnavailable"):
                    PROVIDER_ERRORS.labels(reason=f"refused-{code}"[:60]).inc()
                    raise ProviderError(f"{what}: Alibaba Cloud refused ({code}): {exc.message}", exc.status,
                                        code) from None
                PROVIDER_ERRORS.labels(reason="rate-limited" if code.startswith("Throttling") else "server-error").inc()
                reason = code
            except Exception as exc:  # noqa: BLE001  the SDK wraps transport errors in its own exceptions
                inner = getattr(exc, "inner_exception", exc)
                if _never_connected(exc):
                    PROVIDER_ERRORS.labels(reason="unreachable").inc()
                    reason = f"unreachable: {inner!r}"
                else:
                    PROVIDER_ERRORS.labels(reason="network").inc()
                    ambiguous, reason = True, f"network: {inner!r}"
                    if already is None:  # no way to ask whether it arrived: never again blind
                        raise ProviderError(f"{what}: answer lost ({reason}); not repeated", retryable=True,
                                            ambiguous=True) from None
            if attempt < self.cfg.retries:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise ProviderError(f"{what}: gave up after {self.cfg.retries + 1} attempts ({reason})", retryable=True,
                            ambiguous=ambiguous)


def _never_connected(exc: BaseException) -> bool:
    """Did the connection fail before any byte was sent? The SDK (darabonba) re-raises aiohttp's error as a
    ``RetryError`` holding only its message, so the chain is walked and, last, aiohttp's wording matched."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, aiohttp.ClientConnectorError | ConnectionRefusedError):
            return True
        if "Cannot connect to host" in str(getattr(e, "message", "") or e):
            return True
        todo += [getattr(e, "inner_exception", None), e.__cause__, e.__context__]
    return False


class _Refused(Exception):
    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


def _answer(resp: Any) -> Any:
    body = resp.body
    if body.code != "OK":
        raise _Refused(body.code or "", body.message or "", 200)
    return body


async def _call(fn: Callable[[], Awaitable[Any]]) -> Any:
    """The SDK's own errors (HTTP 4xx/5xx with a code) as :class:`_Refused`."""
    try:
        return _answer(await fn())
    except _Refused:
        raise
    except Exception as exc:
        code = getattr(exc, "code", None)
        if code and getattr(exc, "status_code", None):
            raise _Refused(str(code), str(getattr(exc, "message", "")), exc.status_code) from None
        raise


def local(phone: str) -> str:
    """A mainland number as the cloud takes it: 11 digits, no +86."""
    return phone[3:] if phone.startswith("+86") and len(phone) == 14 else phone


class AliyunSms:
    """SendSms; the same text to many (a red's households) goes up to ``sms_batch`` numbers a request. A sid is
    ``ali-sms:<BizId>:<number>``: a batch shares its BizId, and each SmsReport names the number."""

    channel = Channel.SMS
    name = "aliyun"

    def __init__(self, ali: Aliyun) -> None:
        self.ali = ali
        self.batch = ali.cfg.sms_batch

    async def send(self, n: Notification, since: datetime, drill: bool, taken: Taken | None = None) -> str:
        result = (await self.send_batch([n], since, drill, taken))[0]
        if isinstance(result, ProviderError):
            raise result
        return result

    async def send_batch(self, ns: list[Notification], since: datetime, drill: bool,
                         taken: Taken | None = None) -> list[str | ProviderError]:
        """One SendSms for ``ns`` (all with the same template and parameters): all sent, or none (raises)."""
        code, params = self.ali.codes(ns[0], drill)
        phones = [local(n.phone) for n in ns]
        req = sms_models.SendSmsRequest(phone_numbers=",".join(phones), sign_name=self.ali.cfg.sign_name,
                                        template_code=code, template_param=json.dumps(params, ensure_ascii=False),
                                        out_id=ref(ns[0].key))

        async def op() -> list[str | ProviderError]:
            body = await _call(lambda: self.ali.sms.send_sms_async(req))
            return [f"ali-sms:{body.biz_id}:{p}" for p in phones]

        async def already() -> list[str | ProviderError] | None:  # a request is taken whole: one answer for all
            sid = await self.find(ns[0], since, taken)
            return None if sid is None else [f"ali-sms:found-{ref(ns[0].key)}:{p}" for p in phones]

        what = f"SMS to {ns[0].phone}" + (f" and {len(ns) - 1} more" if len(ns) > 1 else "")
        return await self.ali.retrying(what, op, already)

    async def find(self, n: Notification, since: datetime, taken: Taken | None = None) -> str | None:
        """A message to ``n.phone`` with our OutId, or else with one of its template codes, sent since ``since``
        (a minute's skew allowed) on that day or the next (Beijing time), whose sid is not ``taken``."""
        out_id, spec = ref(n.key), json.loads(n.template or "{}")
        approved = self.ali.cfg.templates.get(spec.get("name", ""))
        codes = {getattr(approved, f, None) for f in ("sms", "drill_sms")} - {None} if approved else set()
        floor = (since - timedelta(seconds=60)).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")
        for day in sorted({since.astimezone(CST).date(), datetime.now(UTC).astimezone(CST).date()}):
            req = sms_models.QuerySendDetailsRequest(phone_number=local(n.phone), send_date=day.strftime("%Y%m%d"),
                                                     page_size=50, current_page=1)
            body = await _call(lambda req=req: self.ali.sms.query_send_details_async(req))
            rows = (body.sms_send_detail_dtos.sms_send_detail_dto or []) if body.sms_send_detail_dtos else []
            for row in rows:
                sid = f"ali-sms:found-{row.out_id}:{row.send_date}:{local(n.phone)}"
                if taken and taken(sid):
                    continue
                if row.out_id == out_id or (row.template_code in codes and (row.send_date or "") >= floor):
                    return sid
        return None


class AliyunVoice:
    """IvrCall (key 1 confirms) for those asked to confirm, SingleCallByTts for notices."""

    channel = Channel.VOICE
    name = "aliyun"

    def __init__(self, ali: Aliyun, digits: str = "1") -> None:
        self.ali = ali
        self.digits = digits

    async def send(self, n: Notification, since: datetime, drill: bool, taken: Taken | None = None) -> str:
        code, params = self.ali.codes(n, drill)
        cfg, out_id = self.ali.cfg, ref(n.key)[:VOICE_OUT_ID]
        tts = json.dumps(params, ensure_ascii=False)
        if n.ack:
            keys = [vms_models.IvrCallRequestMenuKeyMap(key=self.digits, code=cfg.confirmed_tts or code,
                                                        tts_params=None if cfg.confirmed_tts else tts)]
            req: Any = vms_models.IvrCallRequest(called_number=local(n.phone), called_show_number=cfg.show_number,
                                                 start_code=code, start_tts_params=tts, menu_key_map=keys,
                                                 play_times=cfg.play_times, timeout=10000, out_id=out_id)
            call = lambda: self.ali.voice.ivr_call_async(req)  # noqa: E731
        else:
            req = vms_models.SingleCallByTtsRequest(called_number=local(n.phone), called_show_number=cfg.show_number,
                                                    tts_code=code, tts_param=tts, play_times=cfg.play_times,
                                                    out_id=out_id)
            call = lambda: self.ali.voice.single_call_by_tts_async(req)  # noqa: E731

        async def op() -> str:
            body = await _call(call)
            return f"ali-call:{body.call_id}"

        return await self.ali.retrying(f"call to {n.phone}", op)

    async def find(self, n: Notification, since: datetime, taken: Taken | None = None) -> str | None:
        raise ProviderError("aliyun voice: no lookup by OutId; cannot tell whether the call was placed",
                            retryable=True, ambiguous=True)


@contextlib.asynccontextmanager
async def aliyun_provider(cfg: AliyunConfig, secret: str | None = None) -> AsyncIterator[Aliyun]:
    key = secret if secret is not None else (cfg.access_key_secret.get() if cfg.access_key_secret else "")

    def config(endpoint: str) -> Config:
        return Config(access_key_id=cfg.access_key_id, access_key_secret=key, endpoint=endpoint,
                      protocol=cfg.protocol, read_timeout=int(cfg.timeout_s * 1000),
                      connect_timeout=int(min(cfg.timeout_s, 5) * 1000))

    yield Aliyun(cfg, SmsClient(config(cfg.sms_endpoint)), VmsClient(config(cfg.voice_endpoint)))
