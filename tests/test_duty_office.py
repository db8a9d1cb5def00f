"""The duty office: an operator issues, upgrades and lifts a village warning with the `yujing` command, against
the running duty office and alerts, the real broker and the Twilio stand-in; a viewer cannot; every write is in
the audit log; sessions need CSRF; confirmations entered for a person stop their escalation; silences hold."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY
from testing.duty import CHIEF_PASSWORD, duty_office, phones

from duty.accounts import hash_password
from duty.service import serve as serve_duty
from simulators.twilio import Behaviour
from yujing.compose import load_config
from yujing.errors import ConfigError

CITY_DUTY, COUNTY_DUTY = "+8613911000001", "+8613911000002"
TOWN_DUTY, TOWN_RESP = "+8613911000010", "+8613911000011"
VIL_RESP, VIL_GRID, G1_LEADER, G2_LEADER = "+8613911000020", "+8613911000022", "+8613911000031", "+8613911000032"
XL_RESP, XL_G1_LEADER = "+8613911000040", "+8613911000041"
GONGHE_HOMES = {f"+86139112{n:05d}" for n in range(1, 12)}
ORANGE_GONGHE = {VIL_RESP, TOWN_RESP, TOWN_DUTY, VIL_GRID, G1_LEADER, G2_LEADER, COUNTY_DUTY, CITY_DUTY}


async def test_operator_issues_upgrades_and_lifts_a_village_warning_from_the_cli_and_a_viewer_cannot(
        mosquitto, prefix, tmp_path):
    async with duty_office(tmp_path, mosquitto, prefix) as office:
        tw = office.rig.twilio
        code, out, err = await office.cli("wang", "warn", "issue", "--hazard", "landslide", "--level", "orange",
                                          "--area", "shibao.gonghe", "--text", "立即转移")
        assert code == 1 and "forbidden" in err, (out, err)
        code, out, err = await office.cli("li", "warn", "issue", "--hazard", "landslide", "--level", "orange",
                                          "--area", "shibao.gonghe", "--title", "后山裂缝加大",
                                          "--text", "请立即组织危险区群众转移", "--for", "6h")
        assert code == 0, err
        key = json.loads(out)["key"]
        assert key.startswith("landslide:@shibao.gonghe:op-")
        await tw.wait_until(lambda: phones(office.rig) >= ORANGE_GONGHE, 20, "orange to the village's chain")
        assert phones(office.rig) == ORANGE_GONGHE  # nobody of 新乐村, no household at orange
        body = tw.messages_to(VIL_RESP)[0].body
        assert body.startswith("【忠县防汛抗旱指挥部】") and "请立即组织危险区群众转移" in body

        code, out, _ = await office.cli("wang", "warnings")
        assert code == 0 and key in out and "told 8" in out.replace("told  ", "told ")

        n = len(tw.messages)
        code, out, err = await office.cli("li", "warn", "update", key, "--level", "red")
        assert code == 0 and json.loads(out)["state"] == "upgraded", err
        await tw.wait_until(lambda: phones(office.rig, n) >= ORANGE_GONGHE | GONGHE_HOMES, 20, "red")
        assert not phones(office.rig) & {XL_RESP, XL_G1_LEADER}
        told = phones(office.rig)

        code, _, err = await office.cli("wang", "warn", "lift", key)
        assert code == 1 and "forbidden" in err
        n = len(tw.messages)
        code, out, err = await office.cli("li", "warn", "lift", key)
        assert code == 0, err
        await tw.wait_until(lambda: phones(office.rig, n) >= told, 20, "the lift to everyone told")
        assert all("已解除" in m.body for m in tw.messages[n:])

        audit = office.audit()
        actions = [(e.user, e.action.split(" ")[0], e.action.split(" ", 1)[1].replace(key, "KEY"), e.result)
                   for e in audit]
        assert actions == [
            ("wang", "POST", "/api/v1/warnings", "forbidden"),
            ("li", "POST", "/api/v1/warnings", "ok"),
            ("li", "POST", "/api/v1/warnings/KEY/update", "ok"),
            ("wang", "POST", "/api/v1/warnings/KEY/lift", "forbidden"),
            ("li", "POST", "/api/v1/warnings/KEY/lift", "ok"),
        ]
        assert all(e.remote == "127.0.0.1" and e.at for e in audit)
        assert audit[1].target == key and audit[1].detail["level"] == "orange"


async def test_session_login_needs_csrf_for_writes_and_bad_passwords_are_refused_and_audited(
        mosquitto, prefix, tmp_path):
    async with duty_office(tmp_path, mosquitto, prefix) as office, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        api = office.url + "/api/v1"
        async with http.get(api + "/warnings") as r:
            assert r.status == 401
        async with http.post(api + "/login", json={"username": "chief", "password": "wrong"}) as r:
            assert r.status == 401 and (await r.json())["error"] == "bad-credentials"
        async with http.post(api + "/login", json={"username": "chief", "password": CHIEF_PASSWORD}) as r:
            assert r.status == 200
            me = await r.json()
            cookie = r.headers["Set-Cookie"]
        assert me["user"] == "chief" and me["role"] == "admin" and me["csrf"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        issue = {"hazard": "rainstorm", "level": "blue", "area": "shibao.xinle", "text": "注意防范"}
        async with http.post(api + "/warnings", json=issue) as r:
            assert r.status == 403 and (await r.json())["error"] == "csrf"
        async with http.post(api + "/warnings", json=issue, headers={"X-CSRF-Token": me["csrf"]}) as r:
            assert r.status == 201
        async with http.post(api + "/warnings", json={**issue, "area": "nowhere"},
                             headers={"X-CSRF-Token": me["csrf"]}) as r:
            assert r.status == 422 and (await r.json())["error"] == "unknown-area"
        # a warning or a silence is over exactly one place: both, or neither, is refused before anything is done
        async with http.post(api + "/warnings", json={**issue, "site": "LS-GONGHE-01"},
                             headers={"X-CSRF-Token": me["csrf"]}) as r:
            assert r.status == 400 and (await r.json())["detail"] == "give exactly one of site or area"
        async with http.post(api + "/silences", json={"for_s": 600, "reason": "维护"},
                             headers={"X-CSRF-Token": me["csrf"]}) as r:
            assert r.status == 400 and (await r.json())["detail"] == "give exactly one of site or area"
        async with http.get(api + "/audit?limit=10") as r:
            entries = (await r.json())["entries"]
        assert [(e["user"], e["result"]) for e in reversed(entries)] == [
            ("chief", "bad-credentials"), ("chief", "ok"), ("chief", "csrf"), ("chief", "ok"),
            ("chief", "unknown-area"), ("chief", "bad-request"), ("chief", "bad-request")]
        async with http.get(api + "/silences") as r:
            assert (await r.json())["silences"] == []
        await office.rig.twilio.wait_until(lambda: office.rig.twilio.messages_to(XL_RESP), 20, "the blue SMS")
        # the shapes the console reads (the duty-office API contract)
        async with http.get(api + "/warnings") as r:
            [w] = (await r.json())["warnings"]
        assert {"key", "version", "hazard", "level", "state", "site", "area", "title", "evidence", "source",
                "issued_at", "updated_at", "drill", "progress"} <= set(w)
        assert w["source"] == "operator:chief" and w["area"] == "shibao.xinle" and w["site"] == ""
        assert set(w["progress"]) == {"told", "delivered", "failed", "confirmed", "escalated", "by_escalation", "tiers",
                                       "unconfirmed"}

        async def detail() -> dict:
            async with http.get(api + "/warnings/" + w["key"]) as r:
                return await r.json()
        await office.rig.settled()
        one = await detail()
        assert [(h["version"], h["state"], h["level"]) for h in one["history"]] == [(1, "issued", "blue")]
        [n] = one["notifications"]
        assert (n["phone"], n["channel"], n["confirmed_at"]) == (XL_RESP, "sms", None)
        assert {"person", "role", "phone", "channel", "status", "confirmed_at", "confirmed_via"} <= set(n)


async def test_confirmation_entered_by_the_duty_officer_stops_that_persons_escalation(mosquitto, prefix, tmp_path):
    silent = {VIL_RESP: Behaviour.never_answers()}
    async with duty_office(tmp_path, mosquitto, prefix, speed=30.0, behaviours=silent) as office:
        tw = office.rig.twilio
        code, out, err = await office.cli("li", "warn", "issue", "--hazard", "torrent", "--level", "orange",
                                          "--area", "shibao.gonghe", "--text", "沟道水位上涨")
        assert code == 0, err
        key = json.loads(out)["key"]
        await tw.wait_until(lambda: tw.calls_to(VIL_RESP), 20, "the first call to the village head")
        code, out, err = await office.cli("li", "confirm", key, VIL_RESP, "--via", "landline", "--note", "座机确认")
        assert code == 0, err

        def confirmed() -> list:
            return [e for e in office.rig.events() if e[3] == "confirmed-on-behalf" and e[2] == VIL_RESP]
        await tw.wait_until(confirmed, 10, "the confirmation in the notification log")
        assert "operator:li" in confirmed()[0][4]
        calls = len(tw.calls_to(VIL_RESP))
        # the orange timeout (600 s) is 20 s here: past it, the recall would have come
        deadline = asyncio.get_running_loop().time() + 25
        while asyncio.get_running_loop().time() < deadline:
            assert len(tw.calls_to(VIL_RESP)) == calls, "called again after the duty office confirmed for them"
            if any(e[3] == "escalate-recall" for e in office.rig.events()):
                break
            await asyncio.sleep(0.2)
        assert not [e for e in office.rig.events() if e[3].startswith("escalate") and e[2] == VIL_RESP]
        code, out, _ = await office.cli("li", "warnings", "--json")
        [w] = json.loads(out)["warnings"]
        assert VIL_RESP not in {u["phone"] for u in w["progress"]["unconfirmed"]}


async def test_silence_over_an_area_holds_warnings_there_until_removed(mosquitto, prefix, tmp_path):
    async with duty_office(tmp_path, mosquitto, prefix) as office:
        tw = office.rig.twilio
        code, out, err = await office.cli("li", "silence", "add", "--area", "shibao.xinle", "--for", "2h",
                                          "--reason", "监测仪维护")
        assert code == 0, err
        sid = json.loads(out)["id"]
        pipeline = office.rig.pipeline()
        await tw.wait_until(lambda: any(s.id == sid for s in pipeline.grouper.silences), 10, "alerts has it")
        code, out, _ = await office.cli("wang", "silence", "list")
        assert sid in out and "shibao.xinle" in out
        code, out, err = await office.cli("li", "warn", "issue", "--hazard", "rainstorm", "--level", "blue",
                                          "--area", "shibao.xinle")
        assert code == 0, err
        await tw.wait_until(lambda: any(e[3] == "silenced" for e in office.rig.events()), 10, "silenced")
        assert tw.messages == []
        code, _, err = await office.cli("li", "silence", "remove", sid)
        assert code == 0, err
        await tw.wait_until(lambda: pipeline.grouper.silences == [], 10, "alerts lets go of it")
        code, out, err = await office.cli("li", "warn", "issue", "--hazard", "rainstorm", "--level", "blue",
                                          "--area", "shibao.xinle")
        assert code == 0, err
        await tw.wait_until(lambda: tw.messages_to(XL_RESP), 20, "the warning after the silence")


def test_a_duty_office_on_a_public_address_without_tls_is_refused_at_load(tmp_path):
    (tmp_path / "d.yaml").write_text("duty:\n  host: 0.0.0.0\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "d.yaml")
    assert "d.yaml:2" in str(e.value) and "tls" in str(e.value)


def test_a_password_in_place_of_its_hash_is_refused_at_load(tmp_path):
    (tmp_path / "d.yaml").write_text("duty:\n  accounts:\n    - {user: li, role: operator, password_hash: secret}\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "d.yaml")
    assert "argon2" in str(e.value)


async def test_resend_reaches_again_everyone_asked_who_has_not_confirmed(mosquitto, prefix, tmp_path):
    # nobody answers the calls but one group leader, who presses 1; the orange timeout (600 s) is 60 s here
    behaviours = {p: Behaviour.never_answers() for p in ORANGE_GONGHE}
    behaviours[G1_LEADER] = Behaviour.answers_and_presses("1", after_s=1)
    async with duty_office(tmp_path, mosquitto, prefix, speed=10.0, behaviours=behaviours) as office:
        tw, rig = office.rig.twilio, office.rig
        code, out, err = await office.cli("li", "warn", "issue", "--hazard", "torrent", "--level", "orange",
                                          "--area", "shibao.gonghe", "--text", "沟道水位上涨")
        assert code == 0, err
        key = json.loads(out)["key"]
        await tw.wait_until(lambda: any(e[3] == "confirmed" and e[2] == G1_LEADER for e in rig.events()), 20,
                            "the group leader's confirmation")
        await rig.settled()
        first = {p: len(tw.messages_to(p)) for p in ORANGE_GONGHE}
        assert set(first.values()) == {1}
        code, out, err = await office.cli("li", "warn", "resend", key)
        assert code == 0 and json.loads(out)["accepted"], err
        asked = ORANGE_GONGHE - {G1_LEADER, VIL_GRID, CITY_DUTY}  # the grid worker and the city are told, not asked
        await tw.wait_until(lambda: all(len(tw.messages_to(p)) == 2 for p in asked), 20, "the resend")
        await rig.settled()
        assert len(tw.messages_to(G1_LEADER)) == 1 and len(tw.messages_to(VIL_GRID)) == 1
        assert office.audit()[-1].action.endswith("/resend") and office.audit()[-1].result == "ok"


def _tls_files(directory: Path) -> tuple[Path, Path]:
    import ipaddress
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "duty.test")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    crt, pem = directory / "duty.crt", directory / "duty.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


async def test_with_tls_the_duty_office_serves_https_and_its_session_cookie_is_secure(mosquitto, prefix, tmp_path):
    import ssl

    from testing.alerts import write_config
    from yujing.clock import Clock
    from yujing.runtime import Runtime

    crt, key = _tls_files(tmp_path)
    duty = {"port": 0, "client_id": f"duty-{prefix}", "tls": {"cert_file": str(crt), "key_file": str(key)},
            "accounts": [{"user": "chief", "role": "admin", "password_hash": hash_password(CHIEF_PASSWORD)}]}
    write_config(tmp_path / "d", mqtt_port=mosquitto.port, prefix=prefix, twilio_url="http://127.0.0.1:9",
                 extra={"duty": duty})
    rt = Runtime(load_config(tmp_path / "d"), Clock())
    state: dict[str, Any] = {}
    ready = asyncio.Event()
    task = asyncio.create_task(serve_duty(rt, ready=ready, state=state))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        assert state["url"].startswith("https://")
        ctx = ssl.create_default_context(cafile=str(crt))
        async with aiohttp.ClientSession() as http:
            async with http.post(state["url"] + "/api/v1/login", ssl=ctx,
                                 json={"username": "chief", "password": CHIEF_PASSWORD}) as r:
                assert r.status == 200 and "Secure" in r.headers["Set-Cookie"]
            with pytest.raises(aiohttp.ClientError):  # plain HTTP on the TLS port is not served
                async with http.get(state["url"].replace("https", "http") + "/api/v1/me") as r:
                    await r.read()
    finally:
        rt.stop.set()
        await asyncio.wait_for(task, 10)


async def test_repeated_failed_logins_are_refused_for_a_while_even_with_the_right_password(
        mosquitto, prefix, tmp_path):
    async with duty_office(tmp_path, mosquitto, prefix) as office, aiohttp.ClientSession() as http:
        api = office.url + "/api/v1"
        for _ in range(5):
            async with http.post(api + "/login", json={"username": "chief", "password": "guess"}) as r:
                assert r.status == 401
        async with http.post(api + "/login", json={"username": "chief", "password": CHIEF_PASSWORD}) as r:
            assert r.status == 429 and (await r.json())["error"] == "too-many-attempts"
        assert [e.result for e in office.audit()][-2:] == ["bad-credentials", "too-many-attempts"]


async def test_an_oversized_request_is_refused_and_audited(mosquitto, prefix, tmp_path):
    async with duty_office(tmp_path, mosquitto, prefix) as office, aiohttp.ClientSession() as http:
        token = office.tokens["li"].read_text()
        body = {"hazard": "rainstorm", "level": "blue", "area": "shibao", "text": "长" * 100_000}
        async with http.post(office.url + "/api/v1/warnings", json=body,
                             headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 413
        [entry] = office.audit()
        assert (entry.user, entry.status, entry.result) == ("li", 413, "request-entity-too-large")
        assert office.rig.twilio.messages == []


async def test_every_refusal_is_counted_by_reason_and_a_write_that_fails_inside_is_answered_and_audited(
        mosquitto, prefix, tmp_path):
    # was: refusals were audited (writes) but counted nowhere, and a write whose store failed escaped the
    # middleware: aiohttp answered a bare 500 and the audit log never heard of the attempt
    def refused(reason: str) -> float:
        return REGISTRY.get_sample_value("yujing_duty_refused_total", {"reason": reason}) or 0.0

    reasons = ("unauthenticated", "forbidden", "bad-credentials", "internal-error")
    before = {r: refused(r) for r in reasons}
    async with duty_office(tmp_path, mosquitto, prefix) as office, aiohttp.ClientSession() as http:
        api = office.url + "/api/v1"

        def bearer(user: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {office.tokens[user].read_text()}"}

        issue = {"hazard": "rainstorm", "level": "blue", "area": "shibao.xinle", "text": "注意防范"}
        async with http.get(api + "/warnings") as r:
            assert r.status == 401
        async with http.post(api + "/warnings", json=issue, headers=bearer("wang")) as r:
            assert r.status == 403
        async with http.post(api + "/login", json={"username": "chief", "password": "guess"}) as r:
            assert r.status == 401
        # the issuer's database refuses writes (as a failing or read-only disk would): SQLite's own refusal
        office.state["office"].issuer.db.execute("PRAGMA query_only = ON")
        async with http.post(api + "/warnings", json=issue, headers=bearer("li")) as r:
            assert r.status == 500 and (await r.json())["error"] == "internal-error"
        entry = office.audit()[-1]
        assert (entry.user, entry.action, entry.status, entry.result) == ("li", "POST /api/v1/warnings", 500,
                                                                           "internal-error")
        assert entry.detail["area"] == "shibao.xinle"
        office.state["office"].issuer.db.execute("PRAGMA query_only = OFF")
        async with http.post(api + "/warnings", json=issue, headers=bearer("li")) as r:
            assert r.status == 201  # the office carries on
    assert {r: refused(r) - before[r] for r in reasons} == {r: 1.0 for r in reasons}
