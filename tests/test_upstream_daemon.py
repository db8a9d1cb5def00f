"""CAP 1.2 from the weather bureau through the running duty office and alerts, the real broker and the Twilio
stand-in: an orange rainstorm addressed by geocode to one township reaches exactly the policy's people there
with 叫应 and escalation; an Update raises it to red, a Cancel lifts it for everyone told; a replay sends
nothing; the same by polygon; an Exercise reaches only drill recipients, marked; refused documents get 4xx
and send nothing; an HMAC-signed POST is taken, a stale one is not."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime, timezone

import aiohttp
from cap_docs import BILLION_LAUGHS, SENDER, document
from prometheus_client import REGISTRY
from testing.cap import cert_and_key, sign
from testing.duty import duty_office, phones

from simulators.twilio import Behaviour

CITY_DUTY, COUNTY_DUTY = "+8613911000001", "+8613911000002"
TOWN_DUTY, TOWN_RESP = "+8613911000010", "+8613911000011"
VIL_RESP, VIL_GRID, G1_LEADER, G2_LEADER = "+8613911000020", "+8613911000022", "+8613911000031", "+8613911000032"
XL_RESP, XL_G1_LEADER = "+8613911000040", "+8613911000041"
ORANGE_SHIBAO = {VIL_RESP, XL_RESP, TOWN_RESP, TOWN_DUTY, VIL_GRID, G1_LEADER, G2_LEADER, XL_G1_LEADER,
                 COUNTY_DUTY, CITY_DUTY}
ORANGE_RUXI = {"+8613911000060", "+8613911000061", "+8613911000062", "+8613911000063", COUNTY_DUTY, CITY_DUTY}
SHIBAO_HOMES = {f"+86139112{n:05d}" for n in range(1, 15)}
DRILL_PHONE = "+8613911009999"
RUXI_POLYGON = "30.49,108.04 30.49,108.08 30.53,108.08 30.53,108.04 30.49,108.04"
TOKEN = "bureau-token-0123456789abcdef"
HMAC_KEY = "city-platform-hmac-key-0123456789"


async def test_cap_from_the_bureau_reaches_the_township_chain_escalates_updates_cancels_and_refuses_bad_ones(
        mosquitto, prefix, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_CAP_TOKEN", TOKEN)
    monkeypatch.setenv("TEST_CAP_HMAC", HMAC_KEY)
    cert, key = cert_and_key()
    other_cert, other_key = cert_and_key()
    (tmp_path / "signer.pem").write_text(cert)
    upstream = {"max_bytes": 65536, "sources": [
        {"id": "signed", "sender": "500233_Natural_Resources", "auth": {"bearer": {"env": "TEST_CAP_TOKEN"}},
         "certificate": str(tmp_path / "signer.pem")},
        {"id": "zx-met", "sender": SENDER, "authority": "忠县气象台", "auth": {"bearer": {"env": "TEST_CAP_TOKEN"}},
         "may_address": ["county"]},
        {"id": "city", "sender": "500000_EWRP", "auth": {"hmac": {"env": "TEST_CAP_HMAC"}}}]}
    drill = {"drill": {"recipients": [{"name": "演练联络员", "role": "duty", "phone": DRILL_PHONE}]}}
    never = {TOWN_RESP: Behaviour.never_answers()}
    async with duty_office(tmp_path, mosquitto, prefix, speed=60.0, behaviours=never, alerts=drill,
                           upstream=upstream) as office, aiohttp.ClientSession() as http:
        tw, rig = office.rig.twilio, office.rig

        async def post(raw: bytes | str, source: str = "zx-met", headers: dict | None = None) -> tuple[int, dict]:
            body = raw.encode() if isinstance(raw, str) else raw
            h = {"Authorization": f"Bearer {TOKEN}"} if headers is None else headers
            async with http.post(f"{office.url}/cap/{source}", data=body, headers=h) as r:
                return r.status, await r.json()

        t0 = datetime.now(timezone.utc)
        status, out = await post(document("zx-1", sent=t0))
        assert status == 201 and out["status"] == "issued", out
        await tw.wait_until(lambda: phones(rig) >= ORANGE_SHIBAO, 20, "the orange to 石宝镇's chain")
        assert phones(rig) == ORANGE_SHIBAO
        body = tw.messages_to(TOWN_DUTY)[0].body
        assert body.startswith("【忠县气象台】忠县气象台发布暴雨橙色预警[Ⅱ级/严重]：请立即停止户外作业")
        assert body.endswith("收到请回复1确认。")
        # 叫应: the township head never answers; after the orange timeout (600 s, 10 s here) he is called again
        await tw.wait_until(lambda: len(tw.calls_to(TOWN_RESP)) >= 2, 30, "the recall of the township head")

        await rig.settled()
        n = len(tw.messages)
        assert (await post(document("zx-1", sent=t0)))[1]["status"] == "duplicate"  # a replay

        status, out = await post(document("zx-2", msg_type="Update", references=[("zx-1", t0)], severity="Extreme",
                                          headline="忠县气象台升级暴雨红色预警[Ⅰ级/特别严重]"))
        assert status == 200 and out["status"] == "updated", out
        await tw.wait_until(lambda: phones(rig, n) >= ORANGE_SHIBAO | SHIBAO_HOMES, 20, "the red")
        assert not phones(rig, n) - ORANGE_SHIBAO - SHIBAO_HOMES
        told = phones(rig)
        n = len(tw.messages)
        status, out = await post(document("zx-3", msg_type="Cancel", references=[("zx-2", t0)]))
        assert status == 200 and out["status"] == "cancelled", out
        await tw.wait_until(lambda: phones(rig, n) >= told, 20, "the lift to everyone told")
        assert all("已解除" in m.body for m in tw.messages[n:])

        # the same by polygon: 汝溪镇's one village, so the township
        await rig.settled()
        n = len(tw.messages)
        status, out = await post(document("zx-4", geocode=None, polygon=RUXI_POLYGON))
        assert status == 201, out
        await tw.wait_until(lambda: phones(rig, n) >= ORANGE_RUXI, 20, "the orange to 汝溪镇")
        assert phones(rig, n) == ORANGE_RUXI

        # an exercise: the drill list only, marked
        await rig.settled()
        n = len(tw.messages)
        status, out = await post(document("zx-5", status="Exercise"))
        assert status == 201, out
        await tw.wait_until(lambda: tw.messages_to(DRILL_PHONE), 20, "the drill message")
        await rig.settled()
        assert phones(rig, n) == {DRILL_PHONE} and tw.messages_to(DRILL_PHONE)[0].body.startswith("【演练】")

        # refused: wrong token, entity bomb, unknown area, expired; a stale HMAC. Nothing sent for any.
        n = len(tw.messages)
        assert (await post(document("zx-6"), headers={"Authorization": "Bearer wrong"}))[0] == 401
        assert (await post(BILLION_LAUGHS)) == (422, {"error": "entities",
                                                      "detail": "DTDForbidden: DTDs and entities are refused"})
        assert (await post(document("zx-7", geocode="130602000000")))[1]["error"] == "unknown-area"
        assert (await post(document("zx-8", sent=datetime(2020, 1, 1, tzinfo=timezone.utc))))[1]["error"] == "expired"
        assert (await post(document("zx-9")[:-20]))[1]["error"] == "malformed"
        assert (await post(document("zx-10", description="长" * 30000)))[0] == 413
        nr = document("nr-1", sender="500233_Natural_Resources", event="地质灾害气象风险预警",
                      headline="忠县地质灾害气象风险橙色预警")
        assert (await post(nr, "signed"))[1]["error"] == "unsigned"
        assert (await post(sign(nr, other_cert, other_key), "signed"))[1]["error"] == "bad-signature"

        def signed(raw: bytes, ts: int) -> dict:
            mac = hmac.new(HMAC_KEY.encode(), str(ts).encode() + b"." + raw, hashlib.sha256).hexdigest()
            return {"X-Yujing-Timestamp": str(ts), "X-Yujing-Signature": f"sha256={mac}"}
        city = document("c-1", sender="500000_EWRP", geocode="500233009002", event="地质灾害气象风险预警",
                        headline="重庆市地质灾害气象风险黄色预警", severity="Moderate").encode()
        assert (await post(city, "city", signed(city, int(time.time()) - 3600)))[0] == 401
        await rig.settled()
        assert len(tw.messages) == n
        status, out = await post(city, "city", signed(city, int(time.time())))
        assert status == 201 and out["warnings"][0].startswith("landslide:@shibao.xinle:"), out
        await tw.wait_until(lambda: tw.messages_to(XL_RESP)[-1:] and "地质灾害" in tw.messages_to(XL_RESP)[-1].body,
                            20, "the geohazard warning to 新乐村")

        async with http.get(f"{office.url}/api/v1/cap/deadletter",
                            headers={"Authorization": f"Bearer {office.tokens['li'].read_text()}"}) as r:
            refused = [e["reason"] for e in (await r.json())["refused"]]
        assert refused[:9] == ["unauthenticated", "bad-signature", "unsigned", "oversized", "malformed", "expired",
                               "unknown-area", "entities", "unauthenticated"]
        status, out = await post(sign(nr, cert, key), "signed")  # signed by the configured certificate: taken
        assert status == 201 and out["warnings"][0].startswith("landslide:@shibao:"), out


async def test_unauthenticated_posts_are_kept_only_up_to_the_configured_dead_letter_bound(
        mosquitto, prefix, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_CAP_TOKEN", TOKEN)
    upstream = {"deadletter_max_rows": 3, "sources": [
        {"id": "zx-met", "sender": SENDER, "auth": {"bearer": {"env": "TEST_CAP_TOKEN"}}}]}
    dropped = REGISTRY.get_sample_value("yujing_upstream_deadletter_dropped_total") or 0.0
    async with duty_office(tmp_path, mosquitto, prefix, upstream=upstream) as office, \
            aiohttp.ClientSession() as http:
        for n in range(8):  # nobody's token, or nobody's source: refused, and kept only up to the bound
            source, token = ("zx-met", "guess") if n % 2 else ("nowhere", TOKEN)
            async with http.post(f"{office.url}/cap/{source}", data=document(f"u-{n}").encode(),
                                 headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status in (401, 404), await r.text()
        async with http.get(f"{office.url}/api/v1/cap/deadletter",
                            headers={"Authorization": f"Bearer {office.tokens['li'].read_text()}"}) as r:
            kept = [e["reason"] for e in (await r.json())["refused"]]
    assert kept == ["unauthenticated", "unknown-source", "unauthenticated"]
    assert (REGISTRY.get_sample_value("yujing_upstream_deadletter_dropped_total") or 0.0) - dropped == 5
