"""The Twilio stand-in speaks enough of Twilio for the real twilio client, and plays the far end like Twilio."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from alerts.provider import RedirectedHttpClient
from simulators.twilio import Behaviour, TwilioStandIn
from simulators.twilio_far_end import Signer

TOKEN, SID = "standin-test-token", "AC" + "2" * 32
ROOT = Path(__file__).resolve().parent.parent


class Receiver:
    """A webhook endpoint that checks X-Twilio-Signature like an application would."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, str], bool]] = []
        self.validator = RequestValidator(TOKEN)
        self.twiml = ('<?xml version="1.0"?><Response><Gather numDigits="1" action="{base}/gather">'
                      '<Say language="cmn-CN">请按1确认</Say></Gather></Response>')

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        url = f"http://127.0.0.1:{self.port}{request.raw_path}"
        ok = self.validator.validate(url, form, request.headers.get("X-Twilio-Signature", ""))
        self.got.append((request.path, form, ok))
        if request.path == "/twiml":
            return web.Response(text=self.twiml.format(base=f"http://127.0.0.1:{self.port}"),
                                content_type="application/xml")
        return web.Response(status=204)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def posts(self, path: str) -> list[dict[str, str]]:
        assert all(ok for p, _, ok in self.got), "every callback is correctly signed"
        return [f for p, f, _ in self.got if p == path]


def client(tw: TwilioStandIn, token: str = TOKEN) -> tuple[Client, RedirectedHttpClient]:
    http = RedirectedHttpClient(tw.base_url)
    return Client(SID, token, http_client=http), http


@pytest.mark.parametrize("url, params", [
    ("https://yujing.example.cn/twilio/status?n=ab%2Fc&k=real", {"MessageSid": "SM1", "MessageStatus": "sent"}),
    ("http://127.0.0.1:8089/twilio/sms", {"Body": "收到。", "From": "+8613800000001", "To": "", "NumMedia": "0"}),
    ("http://h/x", {}),
])
def test_the_stand_ins_signature_is_the_one_the_twilio_library_computes(url: str, params: dict[str, str]):
    assert Signer(TOKEN).sign(url, params) == RequestValidator(TOKEN).compute_signature(url, params)
    assert Signer("other").sign(url, params) != RequestValidator(TOKEN).compute_signature(url, params)


async def test_messages_are_created_listed_and_fetched_through_the_real_client_with_signed_status_callbacks():
    async with TwilioStandIn(auth_token=TOKEN, account_sid=SID, verbose=False) as tw, Receiver() as rx:
        c, http = client(tw)
        try:
            msg = await c.messages.create_async(to="+8613800000001", from_="+8610000000000", body="测试短信",
                                                status_callback=rx.url("/status?n=abc"))
            assert msg.sid.startswith("SM") and msg.status == "queued" and msg.body == "测试短信"
            await tw.wait_until(lambda: [f for f in rx.posts("/status") if f["MessageStatus"] == "delivered"], 5)
            assert [f["MessageStatus"] for f in rx.posts("/status")] == ["sent", "delivered"]
            listed = await c.messages.list_async(to="+8613800000001")
            assert [m.sid for m in listed] == [msg.sid]
            fetched = await c.messages(msg.sid).fetch_async()
            assert fetched.status == "delivered" and fetched.to == "+8613800000001"
            assert tw.messages[0].body == "测试短信"
        finally:
            await http.close()


async def test_a_wrong_auth_token_is_refused_and_injected_errors_reach_the_client():
    async with TwilioStandIn(auth_token=TOKEN, account_sid=SID, verbose=False) as tw:
        bad, http1 = client(tw, token="wrong")
        good, http2 = client(tw)
        try:
            with pytest.raises(TwilioRestException) as e:
                await bad.messages.create_async(to="+8613800000001", from_="+8610000000000", body="x")
            assert e.value.status == 401
            tw.fail_next(1, 429)
            with pytest.raises(TwilioRestException) as e:
                await good.messages.create_async(to="+8613800000001", from_="+8610000000000", body="x")
            assert e.value.status == 429
            assert (await good.messages.create_async(to="+8613800000001", from_="+8610000000000", body="x")).sid
            with pytest.raises(TwilioRestException) as e:  # a good request before does not let a bad one through
                await bad.messages.create_async(to="+8613800000001", from_="+8610000000000", body="x")
            assert e.value.status == 401
            assert len(tw.messages) == 1
        finally:
            await http1.close()
            await http2.close()


async def test_a_call_fetches_its_twiml_and_the_keypress_is_posted_to_the_gather_action_signed():
    async with TwilioStandIn(auth_token=TOKEN, account_sid=SID, verbose=False,
                             behaviours={"+8613800000002": Behaviour.answers_and_presses("1", after_s=0.05)}) as tw, \
            Receiver() as rx:
        c, http = client(tw)
        try:
            call = await c.calls.create_async(to="+8613800000002", from_="+8610000000000", url=rx.url("/twiml"),
                                              status_callback=rx.url("/status"),
                                              status_callback_event=["ringing", "answered", "completed"])
            assert call.sid.startswith("CA")
            await tw.wait_until(lambda: rx.posts("/gather") and len(rx.posts("/status")) == 3, 10)
            assert rx.posts("/gather")[0]["Digits"] == "1"
            assert tw.calls[0].body == "请按1确认"
            assert [f["CallStatus"] for f in rx.posts("/status")] == ["ringing", "in-progress", "completed"]
        finally:
            await http.close()


async def test_unanswered_calls_undelivered_sms_and_sms_replies_are_played_per_number():
    async with Receiver() as rx:
        behaviours = {"+8613800000003": Behaviour.never_answers(), "+8613800000004": Behaviour(sms_delivered=False),
                      "+8613800000005": Behaviour.replies("收到", after_s=0.05)}
        async with TwilioStandIn(auth_token=TOKEN, account_sid=SID, behaviours=behaviours, verbose=False,
                                 sms_webhook=rx.url("/sms")) as tw:
            c, http = client(tw)
            try:
                await c.calls.create_async(to="+8613800000003", from_="+8610000000000", twiml="<Response/>")
                await c.messages.create_async(to="+8613800000004", from_="+8610000000000", body="a")
                await c.messages.create_async(to="+8613800000005", from_="+8610000000000", body="b")
                await tw.wait_until(lambda: rx.posts("/sms") and tw.calls[0].status == "no-answer"
                                    and tw.messages[0].status == "undelivered", 10)
                assert tw.messages[1].status == "delivered"
                reply = rx.posts("/sms")[0]
                assert reply["From"] == "+8613800000005" and reply["Body"] == "收到"
            finally:
                await http.close()


async def test_the_stand_in_runs_alone_from_the_command_line():
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "simulators.twilio", "--port", "0", cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        assert line.startswith("Twilio stand-in on http://127.0.0.1:")
    finally:
        proc.terminate()
        await proc.wait()
