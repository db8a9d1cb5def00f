"""The Prometheus alerting rules for Yujing's own health (deploy/prometheus/), checked with the real promtool:
they load, and each alert fires — and stays quiet — as its unit-test series say. (That every metric they
name is one a part really exports, and that promtool accepts every part's real /metrics, is checked in
tests/test_observability.py against running parts.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

DIR = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
RULES, TESTS = DIR / "yujing-alerts.yml", DIR / "yujing-alerts.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=DIR)


def alerts() -> set[str]:
    return {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}


def test_promtool_accepts_the_alerting_rules():
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in r.stdout


def test_every_alert_fires_and_stays_quiet_as_its_unit_test_series_say():
    r = promtool("test", "rules", str(TESTS))
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases = [c for t in yaml.safe_load(TESTS.read_text())["tests"] for c in t["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert fires == quiet == alerts()


def test_a_rule_that_names_no_real_condition_fails_its_unit_tests(tmp_path):
    """The unit tests can fail: with the silence threshold doubled, the silent gateway no longer fires on time."""
    (tmp_path / "yujing-alerts.yml").write_text(RULES.read_text().replace(
        "yujing_rules_gateway_last_heartbeat_timestamp_seconds > 300",
        "yujing_rules_gateway_last_heartbeat_timestamp_seconds > 600"))
    (tmp_path / "yujing-alerts.test.yml").write_text(TESTS.read_text())
    r = subprocess.run(["promtool", "test", "rules", "yujing-alerts.test.yml"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode != 0 and "YujingGatewaySilent" in r.stdout + r.stderr
