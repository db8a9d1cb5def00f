"""The phone network's side of the Alibaba Cloud stand-in: each number's far end, and the cloud's HTTP pushes.

A mixin of :class:`~simulators.aliyun.AliyunStandIn`, which holds the records, the push URLs and the session.
Each SMS is delivered (or not) and perhaps answered (``SmsReport``, ``SmsUp``); each call rings, is answered
(or not) and a key may be pressed (``VoiceReport`` with ``dtmf``), per the number's
:class:`~simulators.twilio_records.Behaviour`. Pushes are JSON arrays, retried like the cloud's (1, 5, 10 min).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp

from simulators.twilio_records import Behaviour

CST = timezone(timedelta(hours=8))  # the cloud's receipts carry Beijing time


class AliyunFarEnd:
    behaviours: dict[str, Behaviour]
    default: Behaviour
    urls: dict[str, str]
    pushes: list[tuple[str, list[dict[str, Any]], int]]
    _session: aiohttp.ClientSession | None
    _seq: int

    async def _notify(self) -> None: ...

    def _now(self) -> float: ...

    async def _sleep(self, scenario_s: float) -> None: ...

    def behaviour(self, phone: str) -> Behaviour:
        return self.behaviours.get(local(phone), self.behaviours.get("+86" + local(phone), self.default))

    async def _play_sms(self, rec: Any) -> None:
        b = self.behaviour(rec.to)
        await self._sleep(0.5)
        rec.status = "delivered" if b.sms_delivered else "failed"
        await self._push("SmsReport", [{
            "phone_number": rec.to, "send_time": cst(rec.at), "report_time": cst(self._now()),
            "success": b.sms_delivered, "err_code": "DELIVERED" if b.sms_delivered else "MK:0001",
            "err_msg": "用户接收成功" if b.sms_delivered else "用户接收失败", "sms_size": "1",
            "biz_id": rec.id, "out_id": rec.out_id}])
        if b.sms_delivered and b.sms_reply is not None:
            await self._sleep(b.reply_after_s)
            self._seq += 1
            await self._push("SmsUp", [{"phone_number": rec.to, "send_time": cst(self._now()), "content": b.sms_reply,
                                        "sign_name": rec.sign, "dest_code": "1234", "sequence_id": self._seq}])

    async def _play_call(self, rec: Any, keys: set[str]) -> None:
        b = self.behaviour(rec.to)
        await self._sleep(b.ring_s)
        start = self._now()
        if b.answer and b.digits is not None and rec.action == "IvrCall":
            await self._sleep(b.press_after_s)
            rec.digits = b.digits if b.digits in keys else None
        else:
            await self._sleep(1.0)
        rec.status = "completed" if b.answer else "no-answer"
        await self._push("VoiceReport", [{
            "call_id": rec.id, "out_id": rec.out_id, "callee": rec.to, "caller": "",
            "status_code": "200000" if b.answer else "200005",
            "status_msg": "用户听完语音" if b.answer else "用户未接听",
            "start_time": cst(start) if b.answer else "", "end_time": cst(self._now()) if b.answer else "",
            "duration": str(int(self._now() - start)) if b.answer else "0",
            "dtmf": rec.digits or "", "hangup_direction": "用户" if b.answer else "", "voice_type": "voice"}])

    async def _push(self, kind: str, body: list[dict[str, Any]]) -> None:
        """One HTTP batch push; retried (1 min, 5 min, 10 min on the stand-in's clock) like the cloud's."""
        url = self.urls.get(kind)
        if not url or self._session is None:
            self.pushes.append((kind, body, 0))
            await self._notify()
            return
        for wait in (0, 60, 300, 600):
            if wait:
                await self._sleep(wait)
            try:
                async with self._session.post(url, json=body) as resp:
                    status = resp.status
                    ok = status == 200 and isinstance((await resp.json(content_type=None)).get("code"), int)
            except (aiohttp.ClientError, ValueError, TimeoutError, AttributeError):
                status, ok = 0, False
            self.pushes.append((kind, body, status))
            await self._notify()
            if ok:
                return


def local(phone: str) -> str:
    """The cloud's form of a mainland number: 11 digits, no +86."""
    for prefix in ("+86", "0086", "86"):
        if phone.startswith(prefix) and len(phone) - len(prefix) == 11:
            return phone[len(prefix):]
    return phone


def cst(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")
