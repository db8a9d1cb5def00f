"""Starting a drill from the console, in headless Chromium, on the real ``yujing run`` of the example.

An operator picks a scenario of the deployment, is asked first, and starts it: the real ``yujing drill`` runs
beside the live daemon against its broker (not a second broker on the same port), on the drill's own prefix;
the page shows it running, then passed, and its report listed. Nothing of the drill reaches the live system's
recipients (the live Twilio stand-in sees no 【演练】 message). A viewer is refused, a write without the
session's CSRF token is refused, and every attempt is in the duty office's audit log.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from typing import Any

import pytest
import yaml
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from testing.console import (EXAMPLE, PASSWORDS, chromium, example_with_operators, log_in, page_errors, wait_js,
                             yujing_run)


pytestmark = pytest.mark.timeout(300)

SCENARIO = "drill-smoke"  # half an hour of light rain over 忠州街道 at 600×: three seconds, nothing to warn


def smoke() -> dict[str, Any]:
    scn = yaml.safe_load((EXAMPLE / "scenarios" / "demo.yaml").read_text(encoding="utf-8"))
    rain = {**scn["storms"][0], "track": [[0, 30.3054, 108.0655], ["30m", 30.3054, 108.0655]],
            "rate_mm_h": [[0, 1.0], ["30m", 1.0]]}
    return {**scn, "name": "演练冒烟：忠州城区小雨", "duration": "30m", "speed": 600, "storms": [rain],
            "expect": {"none_above": scn["expect"]["none_above"]}}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cfg_dir = example_with_operators(tmp_path_factory.mktemp("zhongxian"))
    (cfg_dir / "scenarios" / f"{SCENARIO}.yaml").write_text(yaml.safe_dump(smoke(), allow_unicode=True),
                                                            encoding="utf-8")
    with yujing_run(cfg_dir, duration_s=240) as run:
        run.cfg_dir = cfg_dir
        run.twilio = yaml.safe_load((cfg_dir / "deployment.yaml").read_text())["alerts"]["twilio"]["base_url"]
        yield run


def audit(demo: Any) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(f"file:{demo.cfg_dir / 'var' / 'duty-audit.sqlite'}?mode=ro", uri=True) as db:
        return db.execute("SELECT user, action, target, result FROM audit ORDER BY seq").fetchall()


def live_messages(demo: Any) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{demo.twilio}/_standin/records", timeout=10) as r:
        return json.load(r)["messages"]


FETCH = """const [path, body, csrf, done] = arguments;
fetch(path, {method: 'POST', headers: Object.assign({'Content-Type': 'application/json'},
             csrf === null ? {} : {'X-CSRF-Token': csrf}), body: JSON.stringify(body)})
  .then(async r => done([r.status, await r.json().catch(() => ({}))]));"""


def test_an_operator_starts_a_drill_sees_it_running_then_its_report_and_no_live_recipient_is_told(demo):
    with chromium() as b:
        log_in(b, demo.console, "li", PASSWORDS["li"], then="/drills")
        wait_js(b, f"return [...document.querySelectorAll('#d-scenario option')].some(o => o.value == '{SCENARIO}')",
                15, "the deployment's scenarios offered")
        Select(b.find_element(By.ID, "d-scenario")).select_by_value(SCENARIO)

        b.find_element(By.ID, "d-start").click()  # asked first: a cancel starts nothing and audits nothing
        wait_js(b, "return document.getElementById('ask').open", 10, "the confirmation dialog")
        assert SCENARIO in b.find_element(By.ID, "ask-body").text
        b.find_element(By.ID, "ask-cancel").click()
        assert not [a for a in audit(demo) if a[1] == "POST /api/v1/drills"]

        b.find_element(By.ID, "d-start").click()
        wait_js(b, "return document.getElementById('ask').open", 10, "the confirmation dialog")
        b.find_element(By.ID, "ask-ok").click()
        state = wait_js(b, "const r = document.querySelector('#d-runs tr[data-state]'); return r && r.dataset.state",
                        15, "the drill listed")
        assert state in ("running", "passed"), state  # a short drill may already be done on a fast box
        run = b.execute_script("return document.querySelector('#d-runs tr[data-state]').dataset.run")
        done = wait_js(b, "const r = document.querySelector('#d-runs tr[data-state]');"
                          "return r && r.dataset.state != 'running' && r.dataset.state", 150, "the drill ended")
        log = (demo.cfg_dir / "var" / "reports" / run / "drill.log").read_text(encoding="utf-8", errors="replace")
        assert done == "passed", log
        wait_js(b, f"return document.querySelector('#d-reports tr[data-run=\"{run}\"] a')", 10, "its report listed")
        report = json.loads((demo.cfg_dir / "var" / "reports" / run / "report.json").read_text(encoding="utf-8"))
        assert report["passed"] and report["scenario"]["name"] == smoke()["name"]
        assert "Address already in use" not in log  # it used the live broker, it did not start a second one
        assert audit(demo)[-1] == ("li", "POST /api/v1/drills", SCENARIO, "ok")
        assert not [m for m in live_messages(demo) if "演练" in json.dumps(m, ensure_ascii=False)]
        assert not page_errors(b)


def test_a_viewer_sees_no_start_button_and_is_refused(demo):
    with chromium() as b:
        log_in(b, demo.console, "wang", PASSWORDS["wang"], then="/drills")
        assert not b.find_elements(By.ID, "d-start")
        csrf = b.execute_script("return Y.meta('csrf')")
        status, body = b.execute_async_script(FETCH, "/api/v1/drills", {"scenario": SCENARIO}, csrf)
        assert (status, body.get("error")) == (403, "forbidden")
        assert audit(demo)[-1] == ("wang", "POST /api/v1/drills", "", "forbidden")


def test_starting_a_drill_without_the_sessions_csrf_token_is_refused(demo):
    with chromium() as b:
        log_in(b, demo.console, "li", PASSWORDS["li"], then="/drills")
        for token in (None, "not-the-token"):
            status, body = b.execute_async_script(FETCH, "/api/v1/drills", {"scenario": SCENARIO}, token)
            assert (status, body.get("error")) == (403, "csrf")
        assert [a[3] for a in audit(demo)[-2:]] == ["csrf", "csrf"]
        status, body = b.execute_async_script(FETCH, "/api/v1/drills", {"scenario": "../deployment"},
                                              b.execute_script("return Y.meta('csrf')"))
        assert (status, body.get("error")) == (404, "not-found")  # a scenario is named, never a path
