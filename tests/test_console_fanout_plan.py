"""The console's read model shows a warning's fan-out plan: alerts' estimate of when the last person is reached
(given our rates and the provider's limits), per version, read from the notification log alerts writes."""

from __future__ import annotations

from datetime import datetime, timezone

from testing.alerts import warning

from alerts.nflog import NotificationLog
from console.chain import ChainLog
from yujing.model import Level, WarningState

PLAN = {"sms": 38, "sms_segments": 114, "calls": 8, "provider": "twilio", "sms_s": 114.0, "calls_s": 8.0,
        "last_s": 114.0}


def test_a_warnings_fan_out_plans_are_read_per_version_and_other_warnings_are_left_out(tmp_path):
    path = tmp_path / "alerts.sqlite"
    at = datetime(2026, 7, 1, 8, tzinfo=timezone.utc)
    orange = warning(Level.ORANGE)
    red = warning(Level.RED, version=2, state=WarningState.UPGRADED)
    other = warning(Level.RED, site="RG-XINLE-01")
    with NotificationLog(path) as log:
        for w in (orange, red, other):
            log.warnings.record(w, at)
        log.timeline.add(at, orange.id, "", "fanout-plan", {**PLAN, "sms": 10, "sms_segments": 30, "last_s": 30.0})
        log.timeline.add(at, red.id, "", "fanout-plan", PLAN)
        log.timeline.add(at, red.id, "", "escalate-recall", "{}")  # not a plan
        log.timeline.add(at, other.id, "", "fanout-plan", {**PLAN, "last_s": 999.0})
    chain = ChainLog(path)
    try:
        plans = chain.plans(orange.key)
    finally:
        chain.close()
    assert [(p["version"], p["last_s"], p["sms_segments"]) for p in plans] == [(1, 30.0, 30), (2, 114.0, 114)]
    assert plans[1]["provider"] == "twilio" and plans[1]["calls"] == 8


def test_no_log_yet_means_no_plan(tmp_path):
    assert ChainLog(tmp_path / "absent.sqlite").plans("landslide:LS-GONGHE-01") == []
