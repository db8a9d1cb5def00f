"""The provider: the real ``twilio`` client (async), pointed at Twilio or at a stand-in, with retries.

    async with twilio_provider(cfg.twilio) as tw:
        sid = await tw.send_sms(to, body, status_callback=url)

Retry policy: 429 and 5xx mean Twilio did not create the resource, so the request is simply repeated
after a backoff. A network error or timeout is ambiguous (the request may have arrived), so before
repeating, the provider is asked whether a matching message/call exists (same ``to``, same body,
created after we started): that is how a retry never sends twice. Twilio has no idempotency header
for Messages; the notification log's 'sending' rows are reconciled the same way after a crash. A match
whose sid the log already holds (``taken``) is another notification's — the first call to a person a
recall is calling again, the SMS an escalation repeats to someone already told — and never this one's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import string
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import quote_plus

import aiohttp
from prometheus_client import Counter
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from alerts.config import TwilioConfig

log = logging.getLogger("yujing.alerts.provider")
logging.getLogger("twilio.async_http_client").setLevel(logging.WARNING)  # it logs every request at INFO
for _msg in ("BasicAuth is deprecated", "The 'auth' parameter is deprecated"):  # inside twilio 9.13 + aiohttp 3.14
    warnings.filterwarnings("ignore", message=_msg, category=DeprecationWarning)
T = TypeVar("T")
Taken = Callable[[str], bool]  # is this sid already another notification's?

TWILIO_API = "https://api.twilio.com"
PROVIDER_ERRORS = Counter("yujing_alerts_provider_errors_total", "Failed provider requests", ["reason"])


class ProviderError(Exception):
    """The provider refused a request for good (4xx other than 429), or retries ran out."""

    def __init__(self, message: str, status: int | None = None, code: int | str | None = None,
                 retryable: bool = False, ambiguous: bool = False):
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable
        # the request may have reached the provider (a timeout, a dropped answer): another provider must
        # not be tried, or the person could be told twice; only this provider can say whether it arrived
        self.ambiguous = ambiguous


class RedirectedHttpClient(AsyncTwilioHttpClient):
    """The twilio library's own async HTTP client, with https://api.twilio.com replaced by ``base_url``."""

    def __init__(self, base_url: str, timeout: float | None = None, connections: int = 100) -> None:
        # one session for every request (the library's pool_connections), its connections kept alive, at most
        # ``connections`` at once (aiohttp's default 100: above the channels' concurrency, so never the bound);
        # no cookie jar: Twilio's REST API sets none we send back, and the jar is consulted on every request
        super().__init__(pool_connections=False, timeout=timeout)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections),
                                             cookie_jar=aiohttp.DummyCookieJar())
        self.base_url = base_url.rstrip("/")
        self._auth: dict[tuple[str, str], str] = {}  # (account, token) -> its Authorization header, built once

    async def request(self, method: str, url: str, *args, **kwargs):  # type: ignore[override]
        if url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API):]
        data = kwargs.get("data")
        if isinstance(data, dict) and data:
            # the same bytes aiohttp would send, encoded once here: handed a dict, aiohttp builds a FormData
            # (and a multipart writer, with a uuid4) per request, a tenth of a fan-out's CPU
            kwargs["data"] = form_encoded(data).encode()
            kwargs["headers"] = {**(kwargs.get("headers") or {}),
                                 "Content-Type": "application/x-www-form-urlencoded"}
        auth = kwargs.get("auth")
        if auth is not None:  # the same header aiohttp's (deprecated) BasicAuth would build, once, not per request
            header = self._auth.get(auth) or self._auth.setdefault(
                auth, "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": header}
            kwargs["auth"] = None
        return await super().request(method, url, *args, **kwargs)

    # The library formats every header and the response's headers into log lines before the logger can say it
    # is off (WARNING, above): a fan-out makes thousands of requests a second, so the lines are built only if
    # they would be written.
    def log_request(self, kwargs: dict) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            super().log_request(kwargs)

    def log_response(self, status_code: int, response) -> None:  # type: ignore[no-untyped-def]
        if self.logger.isEnabledFor(logging.INFO):
            super().log_response(status_code, response)


# quote_plus of an ASCII character: itself if always safe, '+' for a space, else %XX (urllib's own rules)
_ASCII_PLUS = {c: (chr(c) if chr(c) in string.ascii_letters + string.digits + "_.-~" else "+" if c == 32
                   else f"%{c:02X}") for c in range(128)}


def _quoted(value: str) -> str:
    """``quote_plus(value)``. urllib quotes byte by byte in Python once a value holds anything unsafe (each SMS's
    number and callback URL; a twentieth of the alerts' CPU in a fan-out): an ASCII value is translated in one
    C call instead, and a red's one Chinese body is quoted once."""
    return value.translate(_ASCII_PLUS) if value.isascii() else _quoted_text(value)


@functools.lru_cache(maxsize=256)
def _quoted_text(value: str) -> str:
    return quote_plus(value)


def form_encoded(data: dict) -> str:
    """``urlencode(data, doseq=True)``, the same text (a test holds them equal), each value quoted once per process."""
    pairs = []
    for k, v in data.items():
        key = _quoted(str(k))
        if isinstance(v, (list, tuple)):
            pairs.extend(f"{key}={_quoted(str(x))}" for x in v)
        else:
            pairs.append(f"{key}={_quoted(str(v))}")
    return "&".join(pairs)


class Provider:
    def __init__(self, cfg: TwilioConfig, client: Client) -> None:
        self.cfg = cfg
        self.client = client

    async def _retrying(self, what: str, op: Callable[[], Awaitable[T]],
                        already: Callable[[], Awaitable[T | None]] | None = None) -> T:
        delay = self.cfg.backoff_s
        ambiguous = False
        for attempt in range(self.cfg.retries + 1):
            if ambiguous and already is not None:
                found = await self._quiet(already)
                if found is not None:
                    return found
            try:
                return await op()
            except TwilioRestException as exc:
                if exc.status != 429 and exc.status < 500:
                    PROVIDER_ERRORS.labels(reason=f"http-{exc.status}").inc()
                    raise ProviderError(f"{what}: Twilio refused ({exc.status} {exc.code}): {exc.msg}",
                                        exc.status, exc.code) from None
                PROVIDER_ERRORS.labels(reason="rate-limited" if exc.status == 429 else "server-error").inc()
                reason = f"HTTP {exc.status}"
            except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
                PROVIDER_ERRORS.labels(reason="unreachable").inc()
                reason = f"unreachable: {exc!r}"
            except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
                PROVIDER_ERRORS.labels(reason="network").inc()
                ambiguous = True
                reason = f"network: {exc!r}"
            if attempt < self.cfg.retries:
                log.info("provider request failed, retrying", extra={"kv": {"what": what, "reason": reason,
                                                                            "retry_in_s": round(delay, 2)}})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise ProviderError(f"{what}: gave up after {self.cfg.retries + 1} attempts ({reason})", retryable=True,
                            ambiguous=ambiguous)

    async def _quiet(self, fn: Callable[[], Awaitable[T | None]]) -> T | None:
        try:
            return await fn()
        except (TimeoutError, TwilioRestException, aiohttp.ClientError, ConnectionError):
            return None

    async def send_sms(self, to: str, body: str, status_callback: str | None, since: datetime,
                       taken: Taken | None = None, from_: str | None = None) -> str:
        async def op() -> str:
            kw = {"status_callback": status_callback} if status_callback else {}
            msg = await self.client.messages.create_async(to=to, from_=from_ or self.cfg.from_number, body=body,
                                                          **kw)
            return str(msg.sid)

        return await self._retrying(f"SMS to {to}", op, lambda: self.find_sms(to, body, since, taken))

    async def call(self, to: str, twiml: str, status_callback: str | None, since: datetime,
                   taken: Taken | None = None) -> str:
        async def op() -> str:
            kw = {"status_callback": status_callback, "status_callback_event": ["completed"]} if status_callback else {}
            call = await self.client.calls.create_async(to=to, from_=self.cfg.from_number, twiml=twiml, **kw)
            return str(call.sid)

        return await self._retrying(f"call to {to}", op, lambda: self.find_call(to, since, taken))

    async def find_sms(self, to: str, body: str, since: datetime, taken: Taken | None = None) -> str | None:
        """The sid of a message to ``to`` with ``body`` created at or after ``since`` (clock skew allowed)
        that is not ``taken``; the oldest such, as the one we sent first."""
        floor = since - timedelta(seconds=60)
        for m in reversed(await self.client.messages.list_async(to=to, limit=50)):
            if m.body == body and _after(m.date_created, floor) and not (taken and taken(str(m.sid))):
                return str(m.sid)
        return None

    async def find_call(self, to: str, since: datetime, taken: Taken | None = None) -> str | None:
        floor = since - timedelta(seconds=60)
        for c in reversed(await self.client.calls.list_async(to=to, limit=20)):
            if _after(c.date_created, floor) and not (taken and taken(str(c.sid))):
                return str(c.sid)
        return None

    async def set_sms_webhook(self, url: str) -> bool:
        """Point our number's inbound-SMS webhook at ``url`` (what the Twilio console does). False if not found."""
        ok = True
        for phone in dict.fromkeys([self.cfg.from_number, *self.cfg.from_numbers]):  # every sender of the pool
            numbers = await self.client.incoming_phone_numbers.list_async(phone_number=phone, limit=1)
            if not numbers:
                ok = False
                continue
            await self.client.incoming_phone_numbers(numbers[0].sid).update_async(sms_url=url, sms_method="POST")
        return ok


def _after(value: object, floor: datetime) -> bool:
    """Created at or after ``floor``; unknown or unparseable dates count as after (better a false match than twice)."""
    if isinstance(value, str):
        try:
            value = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return True
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value >= floor
    return True


@contextlib.asynccontextmanager
async def twilio_provider(cfg: TwilioConfig, auth_token: str | None = None) -> AsyncIterator[Provider]:
    token = auth_token if auth_token is not None else (cfg.auth_token.get() if cfg.auth_token else "")
    http = RedirectedHttpClient(cfg.base_url or TWILIO_API, timeout=cfg.timeout_s)
    client = Client(cfg.account_sid, token, http_client=http)
    try:
        yield Provider(cfg, client)
    finally:
        await http.close()
