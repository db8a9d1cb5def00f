"""A drill with provider limits on judges trigger → every household against the bound the limits impose
(alerts' fanout-plan: segments / (senders × rate), calls / rate), states both and their ratio."""

from __future__ import annotations

from datetime import datetime, timezone

from simulators.report import Kind, Timeline
from simulators.report import write_report
from simulators.report.timeline import Recipient, check_expectations, figures
from simulators.scenario import Expect

PLAN = {"warning": "w1", "provider": "twilio", "sms": 100, "sms_segments": 200, "calls": 40,
        "sms_s": 100.0, "calls_s": 40.0, "last_s": 100.0}


def timeline(last_household_t: float) -> Timeline:
    tl = Timeline(scenario={"name": "x"}, started_at=datetime(2026, 1, 1, tzinfo=timezone.utc), speed=60)
    tl.add(10.0, Kind.WARNING, "red", state="issued", hazard="landslide", level="red", participants_told=3)
    for phone, t in (("+861", 11.0), ("+862", 50.0), ("+863", last_household_t)):
        tl.recipients[phone] = Recipient(phone, tier="household", role="household", first_told_t=t)
        tl.add(t, Kind.NOTIFICATION, "SMS", phone=phone, channel="sms", tier="household")
    tl.plans.append(PLAN)
    return tl


def test_the_report_states_the_bound_beside_the_measured_time_and_their_ratio(tmp_path):
    f = figures(timeline(112.0))
    assert f["limits_bound_s"] == 100.0
    assert f["trigger_to_every_household_s"] == f["household_warning_to_every_household_s"] == 102.0
    assert f["household_to_bound_ratio"] == 1.02
    doc = write_report(timeline(112.0), Expect(within_bound_pct=5), tmp_path)
    assert doc["figures"]["household_to_bound_ratio"] == 1.02 and doc["plans"] == [PLAN]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "bound the provider" in page and "1.020" in page


def test_the_expectation_holds_within_five_per_cent_of_the_bound_and_fails_outside():
    ok = check_expectations(timeline(112.0), Expect(within_bound_pct=5))
    assert [e["met"] for e in ok] == [True] and "bound 100.0 s" in ok[0]["detail"]
    slow = check_expectations(timeline(125.0), Expect(within_bound_pct=5))  # 115 s: 15 % over
    assert [e["met"] for e in slow] == [False]


def test_the_fan_out_is_timed_from_the_upgrade_that_reached_the_households():
    tl = timeline(212.0)
    tl.add(110.0, Kind.WARNING, "upgraded to red", state="upgraded", hazard="landslide", level="red")
    tl.events = [e for e in tl.events if not (e.kind is Kind.NOTIFICATION and e.t < 110)]
    for phone, r in tl.recipients.items():
        r.first_told_t = max(r.first_told_t, 111.0)
        tl.add(r.first_told_t, Kind.NOTIFICATION, "SMS", phone=phone, channel="sms", tier="household")
    f = figures(tl)
    assert f["trigger_t"] == 10.0 and f["household_warning_t"] == 110.0
    assert f["household_warning_to_every_household_s"] == 102.0 and f["household_to_bound_ratio"] == 1.02


def test_without_a_plan_there_is_no_bound_and_the_expectation_is_not_met():
    tl = timeline(112.0)
    tl.plans.clear()
    assert figures(tl)["limits_bound_s"] is None
    assert [e["met"] for e in check_expectations(tl, Expect(within_bound_pct=5))] == [False]
