"""A local stand-in for Twilio's REST API, playing the phone network's side like Twilio does.

    async with TwilioStandIn(auth_token="tok", account_sid="AC…", port=0) as tw:
        client = Client(sid, tok, http_client=RedirectedHttpClient(tw.base_url))  # alerts.provider: the real
                                                                                   # twilio client, pointed here
        await client.messages.create_async(to=..., from_=..., body=..., status_callback=...)
        await tw.wait_until(lambda: tw.messages, timeout_s=5)

It serves ``POST/GET /2010-04-01/Accounts/{sid}/Messages.json`` and ``Calls.json`` (and fetch by sid),
form-encoded with Basic auth, answering JSON shaped like Twilio's. For each number a :class:`Behaviour`
says what the far end does: an SMS is delivered (or fails) and may be answered with a reply; a call is
answered (or not) and a key may be pressed after a delay. Everything it posts back (status callbacks,
the TwiML fetch, the ``<Gather>`` action, inbound SMS to :attr:`sms_webhook`) carries a correct
``X-Twilio-Signature``. :meth:`fail_next` injects 429/5xx answers or dropped connections.

The far end lives in ``twilio_far_end.py``, behaviours and records in ``twilio_records.py``; this module
is the REST server and the command, and the one to import from.

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
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from simulators.standin import StandIn
from simulators.twilio_far_end import FarEnd, Signer, new_sid
from simulators.twilio_records import (API, DEFAULT_TOKEN, Behaviour, Injection, Record, TwilioLimits, segments,
                                       twilio_error)
from yujing.runtime import tune_gc

__all__ = ["API", "DEFAULT_TOKEN", "Behaviour", "Injection", "Record", "TwilioLimits", "TwilioStandIn"]

log = logging.getLogger("yujing.sim.twilio")


class TwilioStandIn(StandIn, FarEnd):
    """The stand-in server; use as ``async with``. Records go to :attr:`messages` and :attr:`calls`."""

    title = "Twilio 模拟服务"
    log = log

    def __init__(self, auth_token: str = DEFAULT_TOKEN, account_sid: str = "AC" + "0" * 32,
                 host: str = "127.0.0.1", port: int = 0, behaviours: dict[str, Behaviour] | None = None,
                 default: Behaviour | None = None, sms_webhook: str | None = None, clock: Any = None,
                 verbose: bool = True, latency_s: float = 0.0, limits: TwilioLimits | None = None) -> None:
        super().__init__()
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
        self.limits = limits or TwilioLimits.off()
        self._free: dict[str, float] = {}  # sender (or 'calls') -> scenario time its queue is free again
        self.messages: list[Record] = []
        self.calls: list[Record] = []
        self.requests: list[tuple[float, str, str, dict[str, str]]] = []  # (time, method, path, form)
        self.inbound: list[dict[str, str]] = []  # inbound SMS posted to the webhook
        self.callbacks: list[tuple[str, dict[str, str], int]] = []  # (url, params, HTTP status answered)
        self._signer = Signer(auth_token)
        self._injections: list[Injection] = []
        self._by_sid: dict[str, Record] = {}
        self._auth_ok = ""  # the last Authorization header found good (a fan-out sends the same one each time)

    # ---- lifecycle ------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
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

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- control --------------------------------------------------------------------------------
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

    # ---- REST -----------------------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header and header == self._auth_ok:
            return request.match_info["account"] == self.account_sid
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        if user == self.account_sid and password == self.auth_token:
            self._auth_ok = header
            return request.match_info["account"] == self.account_sid
        return False

    def _refuse(self, request: web.Request) -> web.Response | None:
        if not self._authorised(request):
            return twilio_error(401, 20003, "Authenticate")
        return None

    async def _injected(self, request: web.Request, kind: str, created: bool = False) -> web.StreamResponse | None:
        for inj in self._injections:
            if inj.remaining > 0 and kind in inj.kinds and inj.after_create == created:
                inj.remaining -= 1
                if inj.status == 0:  # a network failure: the connection drops without an answer
                    assert request.transport is not None
                    request.transport.abort()
                    return web.Response(status=503)
                return twilio_error(inj.status, 20429 if inj.status == 429 else 20500,
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
            return twilio_error(400, 21602, "Message body is required.")
        rec = Record(sid=new_sid("SM"), kind="sms", to=form["To"], from_=form.get("From", ""),
                     body=form.get("Body", ""), status_callback=form.get("StatusCallback", ""), params=form)
        rec.queued_s, rec.slot = self._queue("sms:" + rec.from_, segments(rec.body), self.limits.sms_segments_per_s)
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
            return twilio_error(400, 21205, "Url or Twiml is required.")
        rec = Record(sid=new_sid("CA"), kind="call", to=form["To"], from_=form.get("From", ""),
                     url=form.get("Url", ""), twiml=form.get("Twiml", ""),
                     status_callback=form.get("StatusCallback", ""), params=form,
                     callback_events=frozenset(" ".join(map(str, posted.getall("StatusCallbackEvent", []))).split())
                     or frozenset({"completed"}))
        rec.queued_s, rec.slot = self._queue("calls", 1, self.limits.calls_per_s)
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

    def _queue(self, key: str, cost: float, rate: float) -> tuple[float, float]:
        """(scenario seconds this request waits in Twilio's queue for ``key`` — a sender, or the account's
        calls —, the scenario time it leaves it)."""
        now = self._now_s()
        if not rate:
            return 0.0, now
        start = max(now, self._free.get(key, now))
        self._free[key] = start + cost / rate
        return start - now, start

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
            return twilio_error(404, 20404, "The requested resource was not found")
        return web.json_response(rec.as_json(self.account_sid))

    async def _records(self, request: web.Request) -> web.Response:
        """What was received, for a caller in another process: ``?sms=N&calls=M`` skips the first N/M."""
        sms, calls = int(request.query.get("sms", "0")), int(request.query.get("calls", "0"))

        def row(r: Record) -> dict[str, Any]:
            return {"sid": r.sid, "to": r.to, "created": r.created, "status": r.status, "body": r.body,
                    "from": r.from_, "queued_s": r.queued_s, "status_callback": r.status_callback}
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


async def _main(args: argparse.Namespace) -> None:
    tune_gc()  # as the alerts service: a fan-out's records and callbacks at fewer young collections
    async with TwilioStandIn(auth_token=args.auth_token, account_sid=args.account_sid, host=args.host,
                             port=args.port, sms_webhook=args.sms_webhook, verbose=not args.quiet,
                             limits=TwilioLimits(sms_segments_per_s=args.sms_segments_per_s,
                                                 calls_per_s=args.calls_per_s)) as standin:
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
    parser.add_argument("--sms-segments-per-s", type=float, default=0.0,
                        help="SMS segments per second per sender (Twilio long code: 1; 0: no limit)")
    parser.add_argument("--calls-per-s", type=float, default=0.0, help="calls per second per account (Twilio: 1)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))
