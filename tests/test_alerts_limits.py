"""The providers' limits shape the fan-out: sender pools, Twilio's queue, the plan's estimate of the last person."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest
from testing.alerts import warning

from alerts.config import AlertsConfig
from conftest import wait_for
from alerts.harness import ACCOUNT, TOKEN, running_alerts
from alerts.nflog import Notification
from alerts.plan import estimate, segments
from simulators.aliyun_setup import approved
from simulators.twilio import TwilioLimits, TwilioStandIn
from yujing.clock import Clock
from yujing.model import Level

POOL = ["+8610123456701", "+8610123456702"]


KEYS = itertools.count()


def n(channel: str, body: str = "短信") -> Notification:
    return Notification(key=f"k{next(KEYS)}", warning_id="w", warning_key="k", phone="+86139", channel=channel,
                        attempt=1, priority=1, body=body, ack=False, node="n", tier="household", name="x",
                        template='{"name": "default.warning", "params": {}}')


@pytest.mark.parametrize(("providers", "pool", "sms", "body", "calls", "last_s"), [
    (["twilio"], [], 100, "短", 0, 100.0),              # one long code: 1 segment/s
    (["twilio"], POOL, 100, "短", 0, 50.0),             # a pool of two: twice as fast
    (["twilio"], POOL, 100, "长" * 100, 0, 100.0),      # two segments each
    (["twilio"], [], 10, "短", 30, 30.0),               # calls: 1/s per account, beside the SMS
    (["aliyun"], [], 10000, "长" * 100, 0, 0.1),        # one text to 10,000: 10 SendSms at our 100/s
])
def test_the_plan_bounds_the_last_person_by_the_slower_of_our_rate_and_the_providers(
        providers, pool, sms, body, calls, last_s):
    aliyun = {"access_key_id": "a", "sign_name": "s", "show_number": "1", "templates": approved()[0]}
    cfg = AlertsConfig.model_validate({"providers": providers, "aliyun": aliyun, "twilio": {"from_numbers": pool}})
    plan = estimate([n("sms", body) for _ in range(sms)] + [n("voice") for _ in range(calls)], cfg)
    assert plan.last_s == pytest.approx(last_s)


def test_segments_count_chinese_as_ucs2():
    assert (segments("短" * 70), segments("短" * 71), segments("a" * 160), segments("a" * 161)) == (1, 2, 1, 2)


async def test_a_sender_pool_at_twilios_rate_reaches_the_last_household_when_the_plan_says(mosquitto, prefix, tmp_path):
    clock = Clock(40)  # Twilio's queue drains on the scenario clock: minutes of it pass in seconds
    async with TwilioStandIn(auth_token=TOKEN, account_sid=ACCOUNT, clock=clock, verbose=False,
                             limits=TwilioLimits()) as tw:
        alerts = {"grouping": {"wait_s": 0}, "twilio": {"from_numbers": POOL}}
        async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, alerts=alerts, twilio=tw,
                                  clock=clock) as rig:
            w = warning(Level.RED)
            await rig.publish(w)
            await wait_for(lambda: rig.events(what="fanout-plan"), 20, "the fan-out plan")
            await rig.settled(30)
            plan = rig.events(what="fanout-plan")
            households = {n.phone for n in rig.pipeline().nflog.notifications.for_warning_key(w.key) if n.tier == "household"}
            await tw.wait_until(lambda: all(m.sent_at for m in tw.messages) and all(c.sent_at for c in tw.calls),
                                60, "every SMS and call out of Twilio's queue")
            assert Counter(m.from_ for m in tw.messages).keys() == set(POOL)
            for sender in POOL:  # each long code: one segment a second, never faster
                mine = sorted((m.slot, segments(m.body)) for m in tw.messages if m.from_ == sender)
                for (t0, seg), (t1, _) in zip(mine, mine[1:]):
                    assert t1 - t0 >= seg - 0.01
            # officials before households: the 叫应 SMS leave first
            order = sorted(tw.messages, key=lambda m: m.slot)
            first_household = next(i for i, m in enumerate(order) if m.to in households)
            assert all(m.to not in households for m in order[:first_household])
            start = min(m.created for m in tw.messages)  # wall time of the first request
            t_first = min(m.slot for m in tw.messages)
            # reached: when the last segment (or the call) leaves Twilio's queue, by the slots Twilio's queue gave
            # (what was played, sent_at, lags them by the event loop's delay times the drill speed)
            done = [m.slot + segments(m.body) for m in tw.messages] + [c.slot + 1 for c in tw.calls]
            last = max(done) - t_first
            estimated = json.loads(plan[0][4])["last_s"]
            assert last == pytest.approx(estimated, rel=0.05), (last, estimated, start)


async def test_with_twilio_a_recall_its_per_callee_limit_would_refuse_goes_to_the_deputy(mosquitto, prefix, tmp_path):
    from simulators.twilio_records import Behaviour

    village_resp, village_deputy = "+8613911000020", "+8613911000021"
    alerts = {"grouping": {"wait_s": 0}, "ack": {"timeout_s": {"red": 20}},
              "twilio": {"callee_limits": [{"count": 1, "seconds": 60}]}}
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, alerts=alerts, speed=10,
                              behaviours={village_resp: Behaviour.never_answers()}) as rig:
        tw = rig.twilio
        await rig.publish(warning(Level.RED))
        await tw.wait_until(lambda: tw.calls_to(village_deputy), 20, "the deputy's call")
        assert any(e[2] == village_resp and village_deputy in e[4] for e in rig.events(what="recall-limited"))
        assert len(tw.calls_to(village_resp)) == 1


async def test_a_wrong_twilio_auth_token_is_refused_and_reported(mosquitto, prefix, tmp_path):
    from alerts.provider import PROVIDER_ERRORS

    before = PROVIDER_ERRORS.labels(reason="http-401")._value.get()
    async with TwilioStandIn(auth_token="the-real-token", account_sid=ACCOUNT, verbose=False) as tw:
        async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, twilio=tw,
                                  alerts={"grouping": {"wait_s": 0}}) as rig:  # the rig's token: not Twilio's
            await rig.publish(warning(Level.YELLOW))
            await wait_for(lambda: len(rig.events(what="sms-failed")) >= 5, 20, "the refusals")
            assert not tw.messages
            assert all("401" in e[4] for e in rig.events(what="sms-failed"))
            assert PROVIDER_ERRORS.labels(reason="http-401")._value.get() >= before + 5


def test_a_drill_report_states_the_bound_the_limits_put_on_each_fan_out(tmp_path):
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from alerts.nflog import NotificationLog
    from simulators.recorder import note_plans
    from simulators.report import Timeline

    with NotificationLog(tmp_path / "d.sqlite", drill=True) as nflog:
        plan = estimate([n("sms", "长" * 100) for _ in range(40)], AlertsConfig())
        nflog.timeline.add(datetime.now(UTC), "landslide:LS-01#1", "", "fanout-plan", plan.as_dict())
        tl = Timeline(scenario="t", started_at=datetime.now(UTC), speed=1.0)
        note_plans(tl, {"pipelines": {"drill": SimpleNamespace(nflog=nflog)}})
    assert any("80 segments" in note and "80 s after the first request" in note for note in tl.notes), tl.notes
