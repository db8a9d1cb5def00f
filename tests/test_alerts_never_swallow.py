"""A warning whose handling fails is never acknowledged and forgotten: it is retried with backoff, counted, logged,
and the county duty office is alarmed — whatever stage failed (route, render, the log, the provider).

Failures are injected through real mechanisms where there is one: SQLite triggers refusing the log's rows, the
Twilio stand-in refusing a request. A bug in routing or rendering has no such door (a template that cannot be
rendered is refused at load), so the tests of those stages make ``route`` or ``Renderer.render`` raise, as a bug
in them would.
"""

from __future__ import annotations

import sqlite3

from conftest import wait_for
from prometheus_client import REGISTRY
from testing.alerts import MONITOR, SITE_RESP, VILLAGE_RESP, warning

from alerts import pipeline as pipeline_module
from testing.alerts import running_alerts
from alerts.nflog import WarningStatus
from alerts.render import Renderer
from simulators.twilio import Behaviour
from yujing.model import Hazard, Level

COUNTY_DUTY = "+8613911000002"
ALARM = "【预警系统故障】"


def failures(stage: str) -> float:
    return REGISTRY.get_sample_value("yujing_alerts_warning_failures_total", {"stage": stage, "kind": "real"}) or 0.0


def failing() -> float:
    return REGISTRY.get_sample_value("yujing_alerts_failing_warnings", {"kind": "real"}) or 0.0


def alarms(tw) -> list:
    return [m for m in tw.messages_to(COUNTY_DUTY) if ALARM in m.body]


async def test_a_routing_bug_hit_by_a_red_warning_is_retried_until_it_goes_out_and_the_duty_office_is_alarmed(
        mosquitto, prefix, tmp_path, monkeypatch):
    real_route, calls = pipeline_module.route, []

    def route(w, directory, cfg):  # a bug that bites the first two attempts
        calls.append(w.id)
        if len(calls) <= 2:
            raise RuntimeError("injected routing bug")
        return real_route(w, directory, cfg)

    monkeypatch.setattr(pipeline_module, "route", route)
    before = failures("route")
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        tw = rig.twilio
        await rig.publish(warning(Level.RED))
        await tw.wait_until(lambda: alarms(tw), 10, "the alarm to the county duty office")
        assert "injected routing bug" in alarms(tw)[0].body and "route" in alarms(tw)[0].body
        await tw.wait_until(lambda: tw.messages_to(MONITOR) and tw.messages_to(VILLAGE_RESP), 20,
                            "the red warning, on the third attempt")
        await rig.settled()
        assert failures("route") - before == 2 and len(calls) == 3
        assert failing() == 0
        assert len(tw.messages_to(MONITOR)) == 1 and len(alarms(tw)) == 1  # the alarm once, not per attempt
        what = [e[3] for e in rig.events() if e[1] == warning(Level.RED).id]
        assert what.count("handling-failed") == 2 and "handling-recovered" in what
        assert not rig.task.done()


async def test_a_warning_that_can_never_be_rendered_stays_failed_is_retried_and_does_not_hold_up_the_others(
        mosquitto, prefix, tmp_path, monkeypatch):
    """A rendering bug that bites every red landslide (templates that cannot format are refused at load, see
    test_alerts_config, so this is a bug in the code): the warning must be alarmed once, retried with growing
    delays, counted while failing — and a blue warning after it still goes out."""
    real_render = Renderer.render

    def render(self, w, *args, **kw):
        if w.hazard is Hazard.LANDSLIDE and w.level is Level.RED:
            raise ValueError("injected rendering bug")
        return real_render(self, w, *args, **kw)

    monkeypatch.setattr(Renderer, "render", render)
    before = failures("render")
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        tw = rig.twilio
        red = warning(Level.RED)
        await rig.publish(red)
        await tw.wait_until(lambda: alarms(tw), 10, "the alarm to the county duty office")
        assert "render" in alarms(tw)[0].body
        await wait_for(lambda: failures("render") - before >= 3, 15, "three attempts (1 s, then 2 s apart)")
        assert failing() == 1
        assert rig.pipeline().nflog.warnings.state(red.id) is WarningStatus.FAILED
        await rig.publish(warning(Level.BLUE, hazard=Hazard.RAINSTORM, site="LS-GONGHE-01"))
        await tw.wait_until(lambda: tw.messages_to(SITE_RESP), 10, "the blue rainstorm warning meanwhile")
        assert len(alarms(tw)) == 1
        assert not rig.task.done()


async def test_a_warning_whose_notifications_the_log_refuses_is_sent_once_the_log_takes_them(
        mosquitto, prefix, tmp_path):
    """The warning is recorded, then a SQLite trigger refuses its notification rows (as a full disk would). It was
    acknowledged to the broker, so no redelivery will bring it back: the retry from the log must."""
    before = failures("log")
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        tw = rig.twilio
        db = sqlite3.connect(rig.pipeline().nflog.path)
        db.executescript("CREATE TRIGGER refuse_rows BEFORE INSERT ON notifications WHEN NEW.warning_key "
                         "NOT LIKE 'equipment:%' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;")
        await rig.publish(warning(Level.ORANGE))
        await tw.wait_until(lambda: alarms(tw), 10, "the alarm (its rows are not refused)")
        await wait_for(lambda: failures("log") - before >= 2, 15, "the log to refuse it twice")
        assert tw.messages_to(MONITOR) == []
        db.executescript("DROP TRIGGER refuse_rows;")
        db.close()
        await tw.wait_until(lambda: tw.messages_to(MONITOR), 15, "the warning, retried from the log")
        await rig.settled()
        assert len(tw.messages_to(MONITOR)) == 1 and failing() == 0
        assert not rig.task.done()


async def test_a_warning_the_log_cannot_alarm_about_raises_the_alarm_once_the_log_takes_rows(
        mosquitto, prefix, tmp_path):
    """Every notification row refused (the alarm's too): nothing can be queued, the alarm included. Once the log
    takes rows again, the warning and its alarm both go out, each once."""
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        tw = rig.twilio
        before = failures("log")
        db = sqlite3.connect(rig.pipeline().nflog.path)
        db.executescript("CREATE TRIGGER refuse_rows BEFORE INSERT ON notifications "
                         "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;")
        await rig.publish(warning(Level.BLUE))
        await wait_for(lambda: failures("log") - before >= 2, 15, "the log to refuse it twice")
        assert tw.messages == []
        db.executescript("DROP TRIGGER refuse_rows;")
        db.close()
        await tw.wait_until(lambda: tw.messages_to(MONITOR) and alarms(tw), 15, "the warning and the alarm")
        await rig.settled()
        assert len(tw.messages_to(MONITOR)) == 1 and len(alarms(tw)) == 1


async def test_an_sms_the_provider_refuses_for_good_alarms_the_duty_office_and_falls_back_to_a_call(
        mosquitto, prefix, tmp_path):
    before = failures("send")
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        tw = rig.twilio
        tw.fail_next(1, 400, kinds=("sms",))  # the first SMS of the warning: refused, not retryable
        await rig.publish(warning(Level.BLUE))
        await tw.wait_until(lambda: alarms(tw), 10, "the alarm to the county duty office")
        fallback = lambda: [c for c in tw.calls if c.to != COUNTY_DUTY]  # noqa: E731  (the alarm calls too)
        await tw.wait_until(fallback, 10, "the refused SMS's words by voice")
        await rig.settled()
        assert failures("send") - before == 1 and len(alarms(tw)) == 1 and len(fallback()) == 1
        assert fallback()[0].to in alarms(tw)[0].body  # the alarm names who was not reached


async def test_an_escalation_step_that_fails_holds_up_no_other_chain_and_alarms_the_duty_office(
        mosquitto, prefix, tmp_path):
    """A trigger refuses to close the first due step (its chain's row, as a corrupt page would): that step stays due
    and is retried; every other chain's recall is made meanwhile, and the duty office hears of it."""
    alerts = {"grouping": {"wait_s": 0}, "ack": {"timeout_s": {"orange": 1.0}, "steps": ["recall"]}}
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, alerts=alerts,
                              default=Behaviour(answer=False, ring_s=0.2)) as rig:
        tw, nflog = rig.twilio, rig.pipeline().nflog
        await rig.publish(warning(Level.ORANGE))
        await wait_for(lambda: len(list(nflog.timers.pending())) >= 2, 10, "the 叫应 chains to open")
        chains = [phone for _, phone, _, _ in nflog.timers.pending()]
        stuck = chains[0]  # the first in due order: the one a failure used to hold every other behind
        db = sqlite3.connect(nflog.path)
        db.executescript(f"CREATE TRIGGER refuse_step BEFORE UPDATE ON escalations WHEN NEW.phone = '{stuck}' "
                         "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;")
        before = failures("escalate")
        recalled = lambda phone: any(e[3] == "escalate-recall" and e[2] == phone for e in rig.events())  # noqa: E731
        await wait_for(lambda: all(recalled(p) for p in chains[1:]), 15, "every other chain's recall")
        assert not recalled(stuck) and failures("escalate") > before
        await tw.wait_until(lambda: alarms(tw), 10, "the alarm to the county duty office")
        assert "叫应" in alarms(tw)[0].body
        db.executescript("DROP TRIGGER refuse_step;")
        db.close()
        await wait_for(lambda: recalled(stuck), 15, "the stuck chain's recall, once the log takes it")
        assert not rig.task.done()
