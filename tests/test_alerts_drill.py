"""Drills: marked 【演练】 everywhere, only the drill's own recipients, a log of their own, never promoted."""

from __future__ import annotations

import pytest
from testing.alerts import warning

from testing.alerts import running_alerts
from alerts.nflog import NotificationLog
from simulators.twilio import Behaviour
from yujing.config.people import Person, Role
from yujing.errors import StoreError
from yujing.model import Level

DRILL_OFFICER = {"name": "演练联络员", "role": "duty", "phone": "+8613911900001", "channels": ["sms", "voice"]}
DRILL_HOME = {"name": "演练住户", "role": "household", "phone": "+8613911900002", "channels": ["sms"]}
EXTRA = Person(name="演练观察员", role=Role.GRID, phone="+8613911900003", channels=["sms"])


async def test_a_drill_red_reaches_only_the_drill_list_marked_and_logged_apart(mosquitto, prefix, tmp_path):
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, speed=60.0,
                              default=Behaviour.answers_and_presses("1", 5), drill_recipients=[EXTRA],
                              alerts={"grouping": {"wait_s": 0}, "drill": {"recipients": [DRILL_OFFICER, DRILL_HOME]}}) as rig:
        tw = rig.twilio
        await rig.publish(warning(Level.RED, drill=True))
        drill_phones = {"+8613911900001", "+8613911900002", "+8613911900003"}
        await tw.wait_until(lambda: {m.to for m in tw.messages} >= drill_phones and tw.calls
                            and tw.calls[0].body, 10, "the drill's SMS and call")
        assert {m.to for m in tw.messages} == drill_phones
        assert {c.to for c in tw.calls} == {"+8613911900001"}
        assert all(m.body.startswith("【演练】") for m in tw.messages)
        assert tw.calls[0].body.startswith("【演练】")
        assert "k=drill" in tw.calls[0].twiml
        # logged apart: the drill log has it, the real log has never heard of it
        assert rig.pipeline("drill").nflog.for_warning_key(warning().key)
        assert rig.pipeline("real").nflog.for_warning_key(warning().key) == []
        assert rig.pipeline("real").nflog.events() == []
        # confirmations of drill calls land in the drill log
        await tw.wait_until(lambda: any(e[3] == "confirmed" for e in rig.events("drill")), 10, "drill 叫应")
        cap = rig.state["caps"].latest[("landslide", "LS-GONGHE-01")]
        assert "<status>Exercise</status>" in cap


async def test_the_drill_log_refuses_real_warnings_and_the_real_log_drills(tmp_path):
    with NotificationLog(tmp_path / "drill.sqlite", drill=True) as drill_log:
        with pytest.raises(StoreError, match="real warning"):
            drill_log.record_warning(warning(Level.RED, drill=False), warning().updated_at)
    with pytest.raises(StoreError, match="holds drill warnings"):
        with NotificationLog(tmp_path / "drill.sqlite", drill=False):
            pass
    with NotificationLog(tmp_path / "real.sqlite") as real_log, pytest.raises(StoreError, match="drill warning"):
        real_log.record_warning(warning(Level.RED, drill=True), warning().updated_at)


async def test_in_a_drill_run_even_an_unmarked_warning_is_treated_as_a_drill(mosquitto, prefix, tmp_path):
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix, drill=True,
                              alerts={"grouping": {"wait_s": 0}, "drill": {"recipients": [DRILL_HOME]}}) as rig:
        tw = rig.twilio
        await rig.publish(warning(Level.BLUE, drill=False))
        await tw.wait_until(lambda: tw.messages, 10, "the drill SMS")
        await rig.settled()
        assert [(m.to, m.body[:4]) for m in tw.messages] == [("+8613911900002", "【演练】")]
        assert rig.pipeline("real").nflog.events() == []
