"""Durability: the alerts service SIGKILLed in the middle of a fan-out, then restarted, tells everyone once.

The service runs as its own process (``python -m yujing alerts DIR``); the Twilio stand-in runs here and
counts what it receives. After the kill, 'queued' notifications are sent, 'sending' ones are looked up at
the provider first, and nothing already sent is sent again.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections import Counter
from pathlib import Path

from conftest import terminate, wait_for
from testing.alerts import warning

from testing.alerts import ACCOUNT, TOKEN, write_config
from testing.alerts import start, subscribed
from simulators.twilio import Behaviour, TwilioStandIn
from yujing.model import Level

ROOT = Path(__file__).resolve().parent.parent
HOMES = 240


def more_households(directory: Path) -> list[str]:
    phones = [f"+86139113{n:05d}" for n in range(HOMES)]
    rows = ["group,id,name,phone,channels"]
    for n, phone in enumerate(phones):
        group = "shibao.gonghe.g1" if n % 2 else "shibao.gonghe.g2"
        rows.append(f"{group},h{n},住户{n}户,{phone},sms")
    (directory / "households.csv").write_text("\n".join(rows) + "\n")
    return phones


async def test_sigkill_during_fan_out_then_restart_delivers_each_notification_exactly_once(
        mosquitto, prefix, tmp_path):
    # API latency keeps requests in flight, so the kill leaves 'sending' rows the provider did receive
    async with TwilioStandIn(auth_token=TOKEN, account_sid=ACCOUNT, verbose=False, latency_s=0.1,
                             default=Behaviour.answers_and_presses("1", after_s=1)) as tw:
        write_config(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, twilio_url=tw.base_url,
                     alerts={"grouping": {"wait_s": 0}, "webhook": {"port": 0},
                             "rates": {"sms": {"per_s": 120, "burst": 5, "concurrency": 8},
                                       "voice": {"per_s": 40, "burst": 5, "concurrency": 4}}})
        homes = more_households(tmp_path)
        proc = await start(tmp_path)
        try:
            await subscribed(tmp_path)
            from testing.alerts import Rig  # publish as the rules would
            from yujing.compose import load_config
            from yujing.runtime import Runtime
            rig = Rig(tw, Runtime(load_config(tmp_path)), tmp_path)
            await rig.publish(warning(Level.RED))
            await tw.wait_until(lambda: len(tw.messages) >= 60, 20, "the fan-out to be under way")
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            at_kill = len(tw.messages) + len(tw.calls)
            assert len(tw.messages) < HOMES, "the kill came too late to test anything"

            proc = await start(tmp_path)
            await subscribed(tmp_path, times=2)
            expected_sms = set(homes) | {"+8613911000050", "+8613911000051", "+8613911000020", "+8613911000022",
                                         "+8613911000011", "+8613911000010", "+8613911000031", "+8613911000032",
                                         "+8613911000002", "+8613911000001"}
            await tw.wait_until(lambda: {m.to for m in tw.messages} >= expected_sms, 30, "every SMS after restart")
            await tw.wait_until(lambda: len(tw.calls) >= 8, 20, "every call after restart")
            await asyncio.sleep(0.5)  # anything sent twice would arrive now
            sms = Counter(m.to for m in tw.messages)
            calls = Counter(c.to for c in tw.calls)
            assert [p for p, n in sms.items() if n > 1] == []
            assert [p for p, n in calls.items() if n > 1] == []
            assert set(sms) == expected_sms
            assert len(tw.messages) + len(tw.calls) > at_kill
            recovered = [line for line in (tmp_path / "alerts.log").read_text().splitlines() if "recovered" in line]
            assert recovered and "found_sent=0" not in recovered[0], recovered  # in-flight ones were found, not re-sent
        finally:
            await terminate(proc)


async def test_a_pending_escalation_resumes_on_time_after_a_restart_and_nothing_is_sent_twice(
        mosquitto, prefix, tmp_path):
    from datetime import datetime

    from testing.alerts import running_alerts
    from yujing.clock import Clock
    vil_resp = "+8613911000020"
    clock = Clock(150.0)
    async with TwilioStandIn(auth_token=TOKEN, account_sid=ACCOUNT, verbose=False, clock=clock,
                             default=Behaviour.answers_and_presses("1", after_s=20),
                             behaviours={vil_resp: Behaviour.never_answers()}) as tw:
        kw = {"mqtt_port": mosquitto.port, "prefix": prefix, "twilio": tw, "alerts": {"grouping": {"wait_s": 0}}}
        async with running_alerts(tmp_path, clock=clock, **kw) as rig:
            await rig.publish(warning(Level.RED))
            await tw.wait_until(lambda: tw.calls_to(vil_resp), 10, "the first call")
            await rig.settled()
            start = next(datetime.fromisoformat(e[0]) for e in rig.events(what="awaiting-confirmation")
                         if e[2] == vil_resp)
            sent_before = Counter(m.to for m in tw.messages)
        assert len(tw.calls_to(vil_resp)) == 1  # stopped before the 300 s timeout
        await asyncio.sleep(0.5)  # 75 scenario seconds with nobody running
        async with running_alerts(tmp_path, clock=Clock(150.0, start=clock.now()), **kw) as rig:
            await tw.wait_until(lambda: len(tw.calls_to(vil_resp)) >= 2, 10, "the recall after the restart")
            recall = next(datetime.fromisoformat(e[0]) for e in rig.events(what="escalate-recall") if e[2] == vil_resp)
            assert 295 <= (recall - start).total_seconds() <= 345
            await rig.settled()
            assert Counter(m.to for m in tw.messages) == sent_before  # the restart re-sent nothing


async def test_an_ambiguous_failure_of_a_recall_is_not_mistaken_for_the_first_call_to_that_phone(
        mosquitto, prefix, tmp_path):
    """A recall whose request is lost on the way (network error) is looked up at the provider before it is
    retried, as a crash's 'sending' rows are after a restart. Twilio's Calls carry nothing of ours, so the
    lookup is "a call to that number since we claimed it (less 60 s of clock skew)" — which the first call
    to that same person matches. A sid the log already holds is another notification's: never this one."""
    from testing.alerts import running_alerts
    from alerts.service import TIMER_FAILURES
    async with TwilioStandIn(auth_token=TOKEN, account_sid=ACCOUNT, verbose=False,
                             default=Behaviour(answer=False, ring_s=0.2)) as tw:
        alerts = {"grouping": {"wait_s": 0}, "ack": {"timeout_s": {"orange": 1.0}, "steps": ["recall"]}}
        async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, twilio=tw,
                                  alerts=alerts) as rig:
            await rig.publish(warning(Level.ORANGE))
            await tw.wait_until(lambda: len(tw.calls) >= 8, 10, "the first calls")
            asked = {c.to for c in tw.calls}
            tw.fail_next(1, status=0, kinds=("call",))  # the first recall's request never arrives
            await wait_for(lambda: not list(rig.pipeline().nflog.timers.pending()), 10, "every recall")
            await rig.settled()
            calls = Counter(c.to for c in tw.calls)
            assert {p: calls[p] for p in asked if calls[p] != 2} == {}
            assert len(tw.requests) > len(tw.messages) + len(tw.calls) + 1  # the lost request was retried


async def test_the_first_cap_update_after_a_crash_references_the_message_before_it(mosquitto, prefix, tmp_path):
    """A crash after an upgrade was recorded but before it was routed: the restart sends it, and its CAP
    Update (on MQTT, retained, and over HTTP) references the CAP Alert sent before the crash; the Cancel
    that follows references the Update; the CapBook serves the Alert as it was sent."""
    import xml.etree.ElementTree as ET

    import aiomqtt

    from alerts.cap import identifier
    from testing.alerts import running_alerts
    from alerts.nflog import NotificationLog
    from yujing import topics
    from yujing.model import WarningState

    cap = "{urn:oasis:names:tc:emergency:cap:1.2}"
    kw = {"mqtt_port": mosquitto.port, "prefix": prefix, "alerts": {"grouping": {"wait_s": 0}}}
    v1 = warning(Level.BLUE)
    v2 = warning(Level.ORANGE, version=2, state=WarningState.UPGRADED)
    v3 = warning(Level.ORANGE, version=3, state=WarningState.LIFTED)
    async with running_alerts(tmp_path, **kw) as rig:
        await rig.publish(v1)
        await wait_for(lambda: identifier(v1) in rig.state["caps"].by_id, 10, "the CAP Alert")
        alert_xml = rig.state["caps"].by_id[identifier(v1)]
        await rig.settled()
    with NotificationLog(tmp_path / "var" / "alerts.sqlite") as nflog:  # what a SIGKILL right after
        assert nflog.warnings.record(v2, v2.updated_at)                 # recording v2 leaves behind
    docs: list[ET.Element] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"cap-{prefix}") as sub:
        await sub.subscribe(topics.cap(prefix), qos=1)

        async def collect() -> None:
            async for m in sub.messages:
                docs.append(ET.fromstring(m.payload))
        collector = asyncio.create_task(collect())
        try:
            async with running_alerts(tmp_path, **kw) as rig:
                await rig.publish(v3)
                await wait_for(lambda: len({d.findtext(f"{cap}identifier") for d in docs}) >= 3, 10,
                               "Alert (retained), Update, Cancel on MQTT")
                book = rig.state["caps"]
                assert book.by_id[identifier(v1)] == alert_xml
        finally:
            collector.cancel()
    by_id = {d.findtext(f"{cap}identifier"): d for d in docs}
    update, cancel = by_id[identifier(v2)], by_id[identifier(v3)]
    assert update.findtext(f"{cap}msgType") == "Update"
    assert identifier(v1) in (update.findtext(f"{cap}references") or "")
    assert cancel.findtext(f"{cap}msgType") == "Cancel"
    assert identifier(v2) in (cancel.findtext(f"{cap}references") or "")
    assert ET.fromstring(book.by_id[identifier(v2)]).findtext(f"{cap}references") == \
        update.findtext(f"{cap}references")


async def test_a_warning_the_log_cannot_take_is_left_unacknowledged_and_is_sent_once_the_log_can(
        mosquitto, prefix, tmp_path):
    """Another writer holds the notification log's lock (as a full disk would, every write fails): the
    warning must not be acknowledged, or the broker forgets it. Once the log can take it, it is sent."""
    import sqlite3

    from testing.alerts import MONITOR

    from testing.alerts import running_alerts
    from alerts.service import UNLOGGED

    before = UNLOGGED._value.get()
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        blocker = sqlite3.connect(tmp_path / "var" / "alerts.sqlite", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            await rig.publish(warning(Level.BLUE))
            await wait_for(lambda: UNLOGGED._value.get() > before, 15, "the log to refuse the warning")
            assert rig.twilio.messages == []
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await rig.twilio.wait_until(lambda: rig.twilio.messages_to(MONITOR), 20, "the warning, received again")
        await rig.settled()
        assert len(rig.twilio.messages_to(MONITOR)) == 1
        assert not rig.task.done()


async def test_an_escalation_step_whose_calls_cannot_be_written_stays_due_and_runs_once_they_can(
        mosquitto, prefix, tmp_path):
    """A step is closed, the next one scheduled and its calls queued in one transaction. A SQLite trigger
    refuses new notification rows (as a full disk would) while the recalls fall due: the steps must stay
    due, not be marked done without their calls, and each recall is made once the log takes rows again.
    (A SIGKILL between those writes is the same window: seed 611517716 of test_faults_alerts_kill found it.)"""
    from testing.alerts import running_alerts
    from alerts.service import TIMER_FAILURES
    async with TwilioStandIn(auth_token=TOKEN, account_sid=ACCOUNT, verbose=False,
                             default=Behaviour(answer=False, ring_s=0.2)) as tw:
        alerts = {"grouping": {"wait_s": 0}, "ack": {"timeout_s": {"orange": 1.0}, "steps": ["recall"]}}
        async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, twilio=tw,
                                  alerts=alerts) as rig:
            nflog = rig.pipeline().nflog
            await rig.publish(warning(Level.ORANGE))
            await wait_for(lambda: list(nflog.timers.pending()), 10, "the 叫应 chains to open")
            chains = {(wid, phone) for wid, phone, _, _ in nflog.timers.pending()}
            db = sqlite3.connect(nflog.path)
            db.executescript("CREATE TABLE refuse(x); INSERT INTO refuse VALUES (1);"
                             "CREATE TRIGGER refuse_rows BEFORE INSERT ON notifications WHEN EXISTS "
                             "(SELECT 1 FROM refuse) BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;")
            # the counter, not the log line: the line is rate-limited process-wide, and another test may have used it
            failed = TIMER_FAILURES._value.get()
            await wait_for(lambda: TIMER_FAILURES._value.get() > failed, 10, "a recall to fall due and fail")
            assert {(wid, phone) for wid, phone, _, _ in nflog.timers.pending()} == chains  # all still due
            assert not rig.events(what="escalate-recall")
            db.execute("DELETE FROM refuse")
            db.commit()
            db.close()
            await wait_for(lambda: not list(nflog.timers.pending()), 10, "every recall")
            await rig.settled()
            assert len(rig.events(what="escalate-recall")) == len(chains)
        calls = Counter(c.to for c in tw.calls)
        assert {phone: calls[phone] for _, phone in chains if calls[phone] != 2} == {}  # first call + one recall
