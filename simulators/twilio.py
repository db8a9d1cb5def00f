"""A local stand-in for Twilio's REST API, playing the phone network's side like Twilio does.

    async with TwilioStandIn(auth_token="tok", account_sid="AC…", port=0) as tw:
        client = Client(sid, tok, http_client=StandInHttpClient(tw.base_url))   # the real twilio client
        await client.messages.create_async(to=..., from_=..., body=..., status_callback=...)
        await tw.wait_until(lambda: tw.messages, timeout_s=5)

It serves ``POST/GET /2010-04-01/Accounts/{sid}/Messages.json`` and ``Calls.json`` (and fetch by sid),
form-encoded with Basic auth, answering JSON shaped like Twilio's. For each number a :class:`Behaviour`
says what the far end does: an SMS is delivered (or fails) and may be answered with a reply; a call is
answered (or not) and a key may be pressed after a delay. Everything it posts back (status callbacks,
the TwiML fetch, the ``<Gather>`` action, inbound SMS to :attr:`sms_webhook`) carries a correct
``X-Twilio-Signature``. :meth:`fail_next` injects 429/5xx answers or dropped connections.

It needs nothing from yujing: ``python -m simulators.twilio --port 18832 --auth-token tok``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
import yarl
from aiohttp import web
from twilio.request_validator import RequestValidator

log = logging.getLogger("yujing.sim.twilio")

API = "/2010-04-01/Accounts/{account}"
DEFAULT_TOKEN = "standin-token"  # the auth token the stand-in uses (and lends the demo) when none is given


@dataclass(frozen=True)
class Behaviour:
    """What the person at one number does. Delays are in scenario seconds (see ``clock``)."""

    sms_delivered: bool = True  # False: delivery fails (status 'undelivered', error 30003)
    sms_reply: str | None = None  # text sent back after ``reply_after_s``
    reply_after_s: float = 5.0
    answer: bool = True  # False: the call rings out ('no-answer')
    digits: str | None = None  # key(s) pressed on the <Gather> after ``press_after_s``; None: hangs up
    press_after_s: float = 5.0
    ring_s: float = 3.0  # rings before answering, or before giving up

    @classmethod
    def answers_and_presses(cls, digits: str = "1", after_s: float = 5.0) -> Behaviour:
        return cls(answer=True, digits=digits, press_after_s=after_s)

    @classmethod
    def never_answers(cls) -> Behaviour:
        return cls(answer=False)

    @classmethod
    def replies(cls, text: str = "1", after_s: float = 5.0) -> Behaviour:
        return cls(sms_reply=text, reply_after_s=after_s)

    @classmethod
    def unreachable(cls) -> Behaviour:
        return cls(sms_delivered=False, answer=False)


@dataclass
class Record:
    """One message or call as the stand-in received it, with what happened to it since."""

    sid: str
    kind: str  # 'sms' | 'call'
    to: str
    from_: str
    body: str = ""  # SMS text, or the <Say> text heard on the call
    url: str = ""  # a call's TwiML URL
    twiml: str = ""  # a call's inline TwiML (or the TwiML fetched from url)
    status: str = "queued"
    status_callback: str = ""
    params: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)  # wall time, for latency measurements
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))
    digits: str | None = None  # keys pressed on this call
    events: list[tuple[float, str]] = field(default_factory=list)  # (wall time, status or event)
    callback_events: frozenset[str] = frozenset({"completed"})  # a call's StatusCallbackEvent (Twilio's default)

    def as_json(self, account: str) -> dict[str, Any]:
        base = f"{API.format(account=account)}/{'Messages' if self.kind == 'sms' else 'Calls'}/{self.sid}.json"
        date = format_datetime(self.date_created)
        doc: dict[str, Any] = {
            "sid": self.sid, "account_sid": account, "to": self.to, "from": self.from_, "status": self.status,
            "date_created": date, "date_updated": date, "api_version": "2010-04-01", "uri": base,
            "price": None, "price_unit": "USD", "error_code": None, "error_message": None,
        }
        if self.kind == "sms":
            doc.update({"body": self.body, "num_segments": "1", "direction": "outbound-api", "date_sent": date,
                        "messaging_service_sid": None, "num_media": "0"})
            if self.status in ("undelivered", "failed"):
                doc.update({"error_code": 30003, "error_message": "Unreachable destination handset"})
        else:
            doc.update({"direction": "outbound-api", "start_time": date, "end_time": None, "duration": None,
                        "answered_by": None, "parent_call_sid": None})
        return doc


@dataclass
class Injection:
    remaining: int
    status: int  # HTTP status, or 0 for a dropped connection
    kinds: frozenset[str]  # which endpoints: 'sms', 'call'
    after_create: bool = False  # drop the connection only after the message/call was created (lost answer)


class TwilioStandIn:
    """The stand-in server; use as ``async with``. Records go to :attr:`messages` and :attr:`calls`."""

    def __init__(self, auth_token: str = DEFAULT_TOKEN, account_sid: str = "AC" + "0" * 32,
                 host: str = "127.0.0.1", port: int = 0, behaviours: dict[str, Behaviour] | None = None,
                 default: Behaviour | None = None, sms_webhook: str | None = None, clock: Any = None,
                 verbose: bool = True, latency_s: float = 0.0) -> None:
        self.auth_token = auth_token
        self.account_sid = account_sid
        self.host = host
        self.port = port
        self.behaviours: dict[str, Behaviour] = dict(behaviours or {})
        self.default = default or Behaviour()
        self.sms_webhook = sms_webhook  # where inbound SMS go (a number's "A message comes in" URL)
        self.clock = clock  # anything with async sleep(scenario_seconds); None: real time
        self.verbose = verbose
        self.latency_s = latency_s  # real seconds between recording a create request and answering it
        self.messages: list[Record] = []
        self.calls: list[Record] = []
        self.requests: list[tuple[float, str, str, dict[str, str]]] = []  # (time, method, path, form)
        self.inbound: list[dict[str, str]] = []  # inbound SMS posted to the webhook
        self.callbacks: list[tuple[str, dict[str, str], int]] = []  # (url, params, HTTP status answered)
        self._validator = RequestValidator(auth_token)
        self._injections: list[Injection] = []
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._by_sid: dict[str, Record] = {}

    # ---- lifecycle ------------------------------------------------------------------------------
    async def __aenter__(self) -> TwilioStandIn:
        app = web.Application()
        acct = "/2010-04-01/Accounts/{account}"
        app.router.add_post(acct + "/Messages.json", self._create_message)
        app.router.add_get(acct + "/Messages.json", self._list("sms"))
        app.router.add_get(acct + "/Messages/{sid}.json", self._fetch)
        app.router.add_post(acct + "/Calls.json", self._create_call)
        app.router.add_get(acct + "/Calls.json", self._list("call"))
        app.router.add_get(acct + "/Calls/{sid}.json", self._fetch)
        app.router.add_get(acct + "/IncomingPhoneNumbers.json", self._list_numbers)
        app.router.add_post(acct + "/IncomingPhoneNumbers/{sid}.json", self._update_number)
        app.router.add_get("/_standin/records", self._records)  # not Twilio's: for benches and other processes
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        log.info("Twilio 模拟服务已启动 (stand-in listening)", extra={"kv": {"url": self.base_url}})
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- control --------------------------------------------------------------------------------
    def set_behaviour(self, phone: str, behaviour: Behaviour) -> None:
        self.behaviours[phone] = behaviour

    def behaviour(self, phone: str) -> Behaviour:
        return self.behaviours.get(phone, self.default)

    def fail_next(self, n: int, status: int = 503, kinds: tuple[str, ...] = ("sms", "call"),
                  after_create: bool = False) -> None:
        """Answer the next ``n`` create requests with ``status`` (429, 500, 503…; 0 = drop the connection).

        ``after_create`` (with status 0): the message or call IS created, but the answer is lost — the
        ambiguous failure a client must not answer by sending twice.
        """
        self._injections.append(Injection(n, status, frozenset(kinds), after_create))

    def messages_to(self, phone: str) -> list[Record]:
        return [m for m in self.messages if m.to == phone]

    def calls_to(self, phone: str) -> list[Record]:
        return [c for c in self.calls if c.to == phone]

    async def wait_until(self, predicate: Callable[[], Any], timeout_s: float = 10.0, what: str = "") -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every change at the stand-in); return its value."""
        async with self._changed:
            try:
                return await asyncio.wait_for(self._changed.wait_for(predicate), timeout_s)
            except TimeoutError:
                raise AssertionError(f"stand-in: timed out after {timeout_s} s waiting for {what or predicate}") from None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sleep(self, scenario_s: float) -> None:
        if self.clock is not None:
            await self.clock.sleep(scenario_s)
        else:
            await asyncio.sleep(scenario_s)

    # ---- REST -----------------------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.account_sid and password == self.auth_token and \
            request.match_info["account"] == self.account_sid

    def _refuse(self, request: web.Request) -> web.Response | None:
        if not self._authorised(request):
            return _error(401, 20003, "Authenticate")
        return None

    async def _injected(self, request: web.Request, kind: str, created: bool = False) -> web.StreamResponse | None:
        for inj in self._injections:
            if inj.remaining > 0 and kind in inj.kinds and inj.after_create == created:
                inj.remaining -= 1
                if inj.status == 0:  # a network failure: the connection drops without an answer
                    assert request.transport is not None
                    request.transport.abort()
                    return web.Response(status=503)
                return _error(inj.status, 20429 if inj.status == 429 else 20500,
                              "Too Many Requests" if inj.status == 429 else "Service unavailable (injected)")
        self._injections = [i for i in self._injections if i.remaining > 0]
        return None

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        refused = self._refuse(request)
        if refused:
            return refused
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append((time.time(), "POST", request.path, form))
        injected = await self._injected(request, "sms")
        if injected:
            return injected
        if "To" not in form or not (form.get("Body") or form.get("MediaUrl")):
            return _error(400, 21602, "Message body is required.")
        rec = Record(sid="SM" + uuid.uuid4().hex, kind="sms", to=form["To"], from_=form.get("From", ""),
                     body=form.get("Body", ""), status_callback=form.get("StatusCallback", ""), params=form)
        self._add(rec)
        if self.verbose:
            log.info("收到短信发送请求：发往 %s，内容：%s", rec.to, rec.body)
        self._spawn(self._play_sms(rec))
        await self._notify()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        lost = await self._injected(request, "sms", created=True)
        if lost:
            return lost
        return web.json_response(rec.as_json(self.account_sid), status=201)

    async def _create_call(self, request: web.Request) -> web.StreamResponse:
        refused = self._refuse(request)
        if refused:
            return refused
        posted = await request.post()
        form = {k: str(v) for k, v in posted.items()}
        self.requests.append((time.time(), "POST", request.path, form))
        injected = await self._injected(request, "call")
        if injected:
            return injected
        if "To" not in form or not (form.get("Url") or form.get("Twiml")):
            return _error(400, 21205, "Url or Twiml is required.")
        rec = Record(sid="CA" + uuid.uuid4().hex, kind="call", to=form["To"], from_=form.get("From", ""),
                     url=form.get("Url", ""), twiml=form.get("Twiml", ""),
                     status_callback=form.get("StatusCallback", ""), params=form,
                     callback_events=frozenset(" ".join(map(str, posted.getall("StatusCallbackEvent", []))).split())
                     or frozenset({"completed"}))
        self._add(rec)
        if self.verbose:
            log.info("收到语音电话请求：呼叫 %s", rec.to)
        self._spawn(self._play_call(rec))
        await self._notify()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        lost = await self._injected(request, "call", created=True)
        if lost:
            return lost
        return web.json_response(rec.as_json(self.account_sid), status=201)

    def _add(self, rec: Record) -> None:
        (self.messages if rec.kind == "sms" else self.calls).append(rec)
        self._by_sid[rec.sid] = rec
        rec.events.append((time.time(), rec.status))

    def _list(self, kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            refused = self._refuse(request)
            if refused:
                return refused
            q = request.query
            items = self.messages if kind == "sms" else self.calls
            chosen = [r for r in items
                      if ("To" not in q or r.to == q["To"]) and ("From" not in q or r.from_ == q["From"])]
            chosen.sort(key=lambda r: r.date_created, reverse=True)  # Twilio lists newest first
            key = "messages" if kind == "sms" else "calls"
            size = int(q.get("PageSize", "50"))
            page = int(q.get("Page", "0"))
            part = chosen[page * size:(page + 1) * size]
            path = f"{API.format(account=self.account_sid)}/{'Messages' if kind == 'sms' else 'Calls'}.json"
            nxt = None
            if (page + 1) * size < len(chosen):
                extra = "".join(f"&{k}={v}" for k, v in q.items() if k in ("To", "From"))
                nxt = f"{path}?PageSize={size}&Page={page + 1}{extra}"
            return web.json_response({key: [r.as_json(self.account_sid) for r in part], "page": page,
                                      "page_size": size, "next_page_uri": nxt, "uri": path,
                                      "first_page_uri": path, "previous_page_uri": None, "start": page * size,
                                      "end": page * size + len(part)})
        return handler

    async def _fetch(self, request: web.Request) -> web.Response:
        refused = self._refuse(request)
        if refused:
            return refused
        rec = self._by_sid.get(request.match_info["sid"])
        if rec is None:
            return _error(404, 20404, "The requested resource was not found")
        return web.json_response(rec.as_json(self.account_sid))

    async def _records(self, request: web.Request) -> web.Response:
        """What was received, for a caller in another process: ``?sms=N&calls=M`` skips the first N/M."""
        sms, calls = int(request.query.get("sms", "0")), int(request.query.get("calls", "0"))

        def row(r: Record) -> dict[str, Any]:
            return {"sid": r.sid, "to": r.to, "created": r.created, "status": r.status, "body": r.body}
        return web.json_response({"messages": [row(r) for r in self.messages[sms:]],
                                  "calls": [row(r) for r in self.calls[calls:]]})

    def _number(self, phone: str) -> dict[str, Any]:
        sid = "PN" + uuid.uuid5(uuid.NAMESPACE_URL, phone).hex
        return {"sid": sid, "account_sid": self.account_sid, "phone_number": phone, "friendly_name": phone,
                "sms_url": self.sms_webhook or "", "sms_method": "POST", "voice_url": "",
                "uri": f"{API.format(account=self.account_sid)}/IncomingPhoneNumbers/{sid}.json"}

    async def _list_numbers(self, request: web.Request) -> web.Response:
        """Every number asked about is ours: the stand-in owns whatever ``from_`` the service uses."""
        refused = self._refuse(request)
        if refused:
            return refused
        phone = request.query.get("PhoneNumber", "")
        items = [self._number(phone)] if phone else []
        path = f"{API.format(account=self.account_sid)}/IncomingPhoneNumbers.json"
        return web.json_response({"incoming_phone_numbers": items, "page": 0, "page_size": 50, "uri": path,
                                  "next_page_uri": None, "first_page_uri": path, "previous_page_uri": None,
                                  "start": 0, "end": len(items)})

    async def _update_number(self, request: web.Request) -> web.Response:
        """Setting a number's SmsUrl points the stand-in's inbound SMS at it (like the Twilio console)."""
        refused = self._refuse(request)
        if refused:
            return refused
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append((time.time(), "POST", request.path, form))
        if form.get("SmsUrl"):
            self.sms_webhook = form["SmsUrl"]
            log.info("stand-in: inbound SMS now go to %s", self.sms_webhook)
        doc = self._number("")
        doc["sid"] = request.match_info["sid"]
        await self._notify()
        return web.json_response(doc)

    # ---- the far end ----------------------------------------------------------------------------
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

    async def _play_sms(self, rec: Record) -> None:
        b = self.behaviour(rec.to)
        try:
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
        params = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": self.account_sid, "From": from_,
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
            await self._status(rec, "ringing")
            await self._sleep(b.ring_s)
            if not b.answer:
                await self._status(rec, "no-answer")
                return
            await self._status(rec, "in-progress")
            twiml = rec.twiml
            if rec.url:
                twiml = await self._fetch_twiml(rec.url, {**base, "CallStatus": "in-progress"}, rec)
            says, gather = _parse_twiml(twiml)
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
        headers = {"X-Twilio-Signature": self._validator.compute_signature(url, params)}
        async with self._session.post(yarl.URL(url, encoded=True), data=params, headers=headers) as resp:
            text = await resp.text()
            self.callbacks.append((url, params, resp.status))
            return text if resp.status == 200 else ""

    async def post_signed(self, url: str, params: dict[str, str], signature: str | None = None) -> int:
        """POST ``params`` form-encoded to ``url`` signed like Twilio (or with a given, e.g. forged, signature)."""
        assert self._session is not None
        sig = signature if signature is not None else self._validator.compute_signature(url, params)
        try:
            async with self._session.post(yarl.URL(url, encoded=True), data=params,  # the URL exactly as signed
                                          headers={"X-Twilio-Signature": sig}) as resp:
                await resp.read()
                status = resp.status
        except aiohttp.ClientError as exc:
            log.info("stand-in: callback failed", extra={"kv": {"url": url, "error": repr(exc)}})
            status = 0
        self.callbacks.append((url, params, status))
        await self._notify()
        return status


def _parse_twiml(twiml: str) -> tuple[list[str], dict[str, str] | None]:
    """The spoken text of ``<Say>`` verbs (also inside ``<Gather>``) and the first ``<Gather>``'s attributes."""
    if not twiml.strip():
        return [], None
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError:
        return [], None
    says = [(el.text or "").strip() for el in root.iter("Say")]
    gather = next(iter(root.iter("Gather")), None)
    return says, (dict(gather.attrib) if gather is not None else None)


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                              "status": status}, status=status)


async def _main(args: argparse.Namespace) -> None:
    async with TwilioStandIn(auth_token=args.auth_token, account_sid=args.account_sid, host=args.host,
                             port=args.port, sms_webhook=args.sms_webhook, verbose=not args.quiet) as standin:
        print(f"Twilio stand-in on {standin.base_url} (account {standin.account_sid})", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A local stand-in for Twilio's SMS and voice REST API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18832)
    parser.add_argument("--auth-token", default=DEFAULT_TOKEN)
    parser.add_argument("--account-sid", default="AC" + "0" * 32)
    parser.add_argument("--sms-webhook", default=None, help="URL that inbound SMS replies are posted to")
    parser.add_argument("--quiet", action="store_true", help="do not log each SMS and call")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))
