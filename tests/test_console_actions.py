"""The console's actions, in headless Chromium, on the real ``yujing run`` of the example with its duty office.

An operator logs in, issues a village warning (asked first; a cancel sends nothing), sees its SMS at the Twilio
stand-in, confirms for a person who cannot answer the phone and sees that person's escalation stop while the
others' goes on, and lifts it (the lift messages go out). A viewer is refused every write; a write without the
session's CSRF token is refused. Every write is in the duty office's audit log. The clock runs 30× (the orange
confirmation timeout of 600 s is 20 s here), slow enough to act before the escalation does.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from testing.console import PASSWORDS, chromium, click, example_with_operators, log_in, page_errors, wait_js, yujing_run
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select


pytestmark = pytest.mark.timeout(480)

VILLAGE, TOWNSHIP = "zhongzhou.shidi", "zhongzhou"  # 石堤社区, 忠州街道
HEAD, TOWN_DUTY = "+8613900000033", "+8613900000005"  # its responsible person (蔡大军), the township's duty office
TITLE, TEXT = "石堤社区后山沟道水位上涨", "请做好转移准备"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cfg_dir = example_with_operators(tmp_path_factory.mktemp("zhongxian"))
    with yujing_run(cfg_dir, duration_s=420, extra=("--speed", "30")) as run:
        run.cfg_dir = cfg_dir
        run.twilio = yaml.safe_load((cfg_dir / "deployment.yaml").read_text())["alerts"]["twilio"]["base_url"]
        yield run


def records(demo: Any) -> dict[str, list[dict[str, Any]]]:
    """What the Twilio stand-in was asked to send (its records endpoint, for other processes)."""
    with urllib.request.urlopen(f"{demo.twilio}/_standin/records", timeout=10) as r:
        return json.load(r)


def audit(demo: Any) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(f"file:{demo.cfg_dir / 'var' / 'duty-audit.sqlite'}?mode=ro", uri=True) as db:
        return db.execute("SELECT user, action, target, result FROM audit ORDER BY seq").fetchall()


def nflog(demo: Any, sql: str, *args: Any) -> list[tuple]:
    with sqlite3.connect(f"file:{demo.cfg_dir / 'var' / 'alerts.sqlite'}?mode=ro", uri=True) as db:
        return db.execute(sql, args).fetchall()


def wait(cond: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def answer(driver: Any, ok: bool) -> None:
    """The confirmation dialog every action opens: say yes or no."""
    wait_js(driver, "return document.getElementById('ask').open", 10, "the confirmation dialog")
    driver.find_element(By.ID, "ask-ok" if ok else "ask-cancel").click()
    wait_js(driver, "return !document.getElementById('ask').open", 10, "the dialog closed")


def fill_issue_form(driver: Any) -> None:
    driver.find_element(By.ID, "issue-open").click()
    wait_js(driver, "return document.getElementById('ask').open", 10, "the issue form")
    form = driver.find_element(By.CSS_SELECTOR, "#ask form")
    Select(form.find_element(By.NAME, "hazard")).select_by_value("torrent")
    Select(form.find_element(By.NAME, "level")).select_by_value("orange")
    Select(form.find_element(By.NAME, "township")).select_by_value(TOWNSHIP)
    Select(form.find_element(By.NAME, "area")).select_by_value(VILLAGE)
    form.find_element(By.NAME, "title").send_keys(TITLE)
    form.find_element(By.NAME, "text").send_keys(TEXT)
    driver.find_element(By.ID, "ask-ok").click()  # the form's own button: next comes the confirmation


def test_operator_issues_a_village_warning_confirms_for_a_person_and_lifts_it(demo, tmp_path):
    shots = Path(__import__("os").environ.get("YUJING_SCREENSHOTS") or tmp_path)
    with chromium() as b:
        log_in(b, demo.console, "li", PASSWORDS["li"], then="/warnings")
        sent_before = len(records(demo)["messages"])

        # asked first: a cancel sends nothing and writes nothing
        fill_issue_form(b)
        answer(b, ok=False)
        assert not [a for a in audit(demo) if a[1] == "POST /api/v1/warnings"]
        fill_issue_form(b)
        answer(b, ok=True)
        wait_js(b, "return location.pathname.startsWith('/warnings/torrent')", 20, "the new warning's page")
        key = b.execute_script("return document.getElementById('warning').dataset.key")
        assert ("li", "POST /api/v1/warnings", key, "ok") in audit(demo)

        # its SMS at the Twilio stand-in, to the village's responsible person and the township's duty office
        def sms_to(phone: str) -> list[dict[str, Any]]:
            return [m for m in records(demo)["messages"][sent_before:] if m["to"] == phone and TEXT in m["body"]]
        wait(lambda: sms_to(HEAD) and sms_to(TOWN_DUTY), 60, "the warning's SMS")
        assert "石堤社区山洪橙色预警" in sms_to(HEAD)[0]["body"]

        # the head cannot answer the phone (the stand-in's far end hangs up): the duty officer confirms for him
        click(b, f'button.confirm-for[data-phone="{HEAD}"]', 60, "the village head among the unconfirmed")
        form = b.find_element(By.CSS_SELECTOR, "#ask form")
        Select(form.find_element(By.NAME, "via")).select_by_value("landline")
        form.find_element(By.NAME, "note").send_keys("座机确认")
        answer(b, ok=True)
        wait_js(b, f"return !document.querySelector('#w-unconfirmed tr[data-phone=\"{HEAD}\"]')"
                   f" && document.querySelector('#w-notifications tr[data-phone=\"{HEAD}\"].confirmed')", 30,
                "the head confirmed on the page")
        calls_to_head = len([c for c in records(demo)["calls"] if c["to"] == HEAD])
        b.save_screenshot(str(shots / "console-confirmed-for.png"))
        # the others' escalation goes on (the proof it would have come), the head's never does
        wait(lambda: nflog(demo, "SELECT phone FROM events WHERE what LIKE 'escalate%' AND warning_id LIKE ?",
                           key + "#%"), 90, "an escalation of someone who did not confirm")
        assert not nflog(demo, "SELECT what FROM events WHERE what LIKE 'escalate%' AND phone=? AND warning_id LIKE ?",
                         HEAD, key + "#%")
        assert len([c for c in records(demo)["calls"] if c["to"] == HEAD]) == calls_to_head
        assert nflog(demo, "SELECT detail FROM events WHERE what='confirmed-on-behalf' AND phone=?", HEAD)
        assert ("li", "POST /api/v1/confirm", key, "ok") in audit(demo)

        # resend to everyone not yet confirmed: the township's duty office is told again
        def to(phone: str) -> int:
            r = records(demo)
            return len([m for m in r["messages"] + r["calls"] if m["to"] == phone])
        town = to(TOWN_DUTY)
        b.find_element(By.ID, "act-resend").click()
        answer(b, ok=True)
        wait(lambda: to(TOWN_DUTY) > town, 60, "the resend to the township's duty office")
        assert ("li", f"POST /api/v1/warnings/{key}/resend", key, "ok") in audit(demo)

        # lift: asked first, then the lift goes to the people told
        told = {m["to"] for m in records(demo)["messages"][sent_before:] if TEXT in m["body"]}
        n = len(records(demo)["messages"])
        b.find_element(By.ID, "act-lift").click()
        answer(b, ok=True)
        wait(lambda: {HEAD, TOWN_DUTY} <= {m["to"] for m in records(demo)["messages"][n:] if "解除" in m["body"]}, 60,
             "the lift messages")
        lifted = {m["to"] for m in records(demo)["messages"][n:] if "解除" in m["body"]}
        assert lifted <= told
        wait_js(b, "return document.getElementById('warning').dataset.state == 'lifted'", 30, "lifted on the page")
        assert ("li", f"POST /api/v1/warnings/{key}/lift", key, "ok") in audit(demo)
        assert not page_errors(b)


def test_an_operator_silences_a_site_for_maintenance_from_its_page_after_confirming(demo):
    site = "RG-ZHONGZHOU-02"
    with chromium() as b:
        log_in(b, demo.console, "li", PASSWORDS["li"], then=f"/sites/{site}")
        b.find_element(By.ID, "act-silence").click()
        form = b.find_element(By.CSS_SELECTOR, "#ask form")
        form.find_element(By.NAME, "reason").send_keys("雨量计更换翻斗")
        answer(b, ok=True)
        wait(lambda: ("li", "POST /api/v1/silences") in [a[:2] for a in audit(demo)], 20, "the silence in the audit")
        status, body = b.execute_async_script(FETCH, "GET", "/api/v1/silences", None, None)
        assert status == 200 and [s["site"] for s in body["silences"] if "雨量计更换翻斗" in s["reason"]] == [site]


WRITES = [("POST", "/api/v1/warnings", {"hazard": "torrent", "level": "blue", "area": VILLAGE, "title": "x"}),
          ("POST", "/api/v1/warnings/torrent:x/update", {"level": "red"}),
          ("POST", "/api/v1/warnings/torrent:x/lift", {}),
          ("POST", "/api/v1/warnings/torrent:x/resend", {}),
          ("POST", "/api/v1/confirm", {"key": "torrent:x", "phone": HEAD, "via": "landline"}),
          ("POST", "/api/v1/silences", {"area": VILLAGE, "for_s": 3600, "reason": "x"}),
          ("DELETE", "/api/v1/silences/x", None)]

FETCH = """const [method, path, body, csrf, done] = arguments;
fetch(path, {method, headers: Object.assign({'Content-Type': 'application/json'}, csrf === null ? {} : {'X-CSRF-Token': csrf}),
             body: body === null ? undefined : JSON.stringify(body)})
  .then(async r => done([r.status, await r.json().catch(() => ({}))]));"""


def test_a_viewer_sees_no_action_and_is_refused_every_write(demo):
    with chromium() as b:
        log_in(b, demo.console, "wang", PASSWORDS["wang"], then="/warnings")
        assert not b.find_elements(By.ID, "issue-open")
        sent = len(records(demo)["messages"])
        csrf = b.execute_script("return Y.meta('csrf')")
        for method, path, body in WRITES:
            status, answer_ = b.execute_async_script(FETCH, method, path, body, csrf)
            assert (status, answer_.get("error")) == (403, "forbidden"), (method, path, status, answer_)
        refused = [a for a in audit(demo) if a[0] == "wang" and a[1] != "POST /api/v1/login"]
        assert len(refused) == len(WRITES) and {a[3] for a in refused} == {"forbidden"}
        assert len(records(demo)["messages"]) == sent


def test_a_write_without_the_sessions_csrf_token_is_refused(demo):
    with chromium() as b:
        log_in(b, demo.console, "li", PASSWORDS["li"], then="/warnings")
        n = len(audit(demo))
        status, body = b.execute_async_script(FETCH, *WRITES[0][:3], None)
        assert (status, body.get("error")) == (403, "csrf")
        status, body = b.execute_async_script(FETCH, *WRITES[0][:3], "not-the-token")
        assert (status, body.get("error")) == (403, "csrf")
        assert [a[3] for a in audit(demo)[n:]] == ["csrf", "csrf"]
        assert not nflog(demo, "SELECT 1 FROM warnings WHERE payload LIKE '%\"title\":\"x\"%'")
