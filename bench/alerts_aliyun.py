"""The Alibaba Cloud stand-in as ``bench/alerts.py --provider aliyun`` runs it: its own process, every limit off,
its pushes (SmsReport, VoiceReport) going to the alerts service's push URLs, and what it received readable by
the bench at ``/_standin/records`` in the Twilio stand-in's shape.

    python bench/alerts_aliyun.py --port P --push-base URL/aliyun/TOKEN   (prints a line once listening)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from simulators.aliyun import AliyunStandIn
from simulators.aliyun_limits import AliyunLimits
from simulators.aliyun_setup import approved

AK, SECRET, SIGN, SHOW = "LTAI5tYujingBench", "aliyun-bench-secret-0123", "中县应急管理局", "057100000001"


def settings(endpoint: str, push_token_env: str, secret_env: str) -> dict:
    """The ``alerts.aliyun`` section for a service using this stand-in."""
    cfg_templates, _, _ = approved()
    return {"access_key_id": AK, "access_key_secret": {"env": secret_env}, "sign_name": SIGN, "show_number": SHOW,
            "sms_endpoint": endpoint, "voice_endpoint": endpoint, "protocol": "http", "templates": cfg_templates,
            "push_token": {"env": push_token_env}}


class BenchStandIn(AliyunStandIn):
    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_get("/_standin/records", self._records)

    async def _records(self, request: web.Request) -> web.Response:
        sms, calls = int(request.query.get("sms", "0")), int(request.query.get("calls", "0"))
        rows = {"sms": [], "call": []}
        for r in self.records:
            rows[r.kind].append({"sid": r.id, "to": r.to, "created": r.wall, "body": r.text, "ref": r.out_id,
                                 "queued_s": 0.0})
        return web.json_response({"messages": rows["sms"][sms:], "calls": rows["call"][calls:]})


async def main(args: argparse.Namespace) -> None:
    _, sms, tts = approved()
    async with BenchStandIn(secrets={AK: SECRET}, signs={SIGN}, sms_templates=sms, tts_templates=tts,
                            show_numbers={SHOW}, limits=AliyunLimits.off(), port=args.port, verbose=False) as ali:
        base = args.push_base.rstrip("/")
        ali.push_to(sms_report=f"{base}/sms-report", sms_up=f"{base}/sms-up", voice_report=f"{base}/voice-report")
        print(f"Alibaba Cloud stand-in on http://{ali.endpoint}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--push-base", required=True, help="the service's push URL root: <webhooks>/aliyun/<token>")
    asyncio.run(main(p.parse_args()))
