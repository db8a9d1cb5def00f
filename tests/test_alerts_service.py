"""The alerts service end to end: MQTT warning in, SMS and calls out at the Twilio stand-in (real twilio client)."""

from __future__ import annotations

from testing.alerts import MONITOR, SITE_RESP, VILLAGE_RESP, running_alerts, warning
from yujing.model import Level

async def test_blue_landslide_warning_reaches_the_site_monitor_and_the_village_responsible_person_by_sms(
        mosquitto, prefix, tmp_path):
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        await rig.publish(warning(Level.BLUE))
        tw = rig.twilio
        await tw.wait_until(lambda: tw.messages_to(MONITOR) and tw.messages_to(SITE_RESP)
                            and tw.messages_to(VILLAGE_RESP), 10, "blue SMS")
        await tw.wait_until(lambda: all(m.status == "delivered" for m in tw.messages), 10, "delivery")
        assert {m.to for m in tw.messages} == {MONITOR, SITE_RESP, VILLAGE_RESP}
        assert tw.calls == []
        body = tw.messages_to(VILLAGE_RESP)[0].body
        assert "蓝色预警" in body and "共和村大岩口滑坡隐患点" in body and "确认" not in body


async def test_garbage_on_the_warnings_topic_is_counted_and_logged_once_and_the_next_warning_still_goes_out(
        mosquitto, prefix, tmp_path, caplog):
    import aiomqtt

    from alerts.service import REJECTED
    from yujing import topics

    before = REJECTED.labels(reason="invalid")._value.get()
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"junk-{prefix}") as c:
            for junk in (b"not json", b'{"key": "x"}', b"\xff\xfe", b"[]"):
                await c.publish(topics.warnings(prefix, "landslide", "LS-GONGHE-01"), junk, qos=1)
        await rig.publish(warning(Level.BLUE))
        await rig.twilio.wait_until(lambda: rig.twilio.messages_to(MONITOR), 10, "the valid warning after junk")
        assert REJECTED.labels(reason="invalid")._value.get() - before == 4
        assert len([r for r in caplog.records if "not a HazardWarning" in r.getMessage()]) <= 1  # not four
        assert not rig.task.done()


async def test_after_a_broker_restart_the_service_resubscribes_and_warnings_flow_again(
        private_server, prefix, tmp_path, caplog):
    import logging

    from conftest import wait_for
    from servers import Mosquitto

    caplog.set_level(logging.INFO, logger="yujing.alerts")
    broker = private_server(Mosquitto)
    async with running_alerts(tmp_path, mqtt_port=broker.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        broker.stop(kill=True)
        broker.start()
        await wait_for(lambda: sum("alerts subscribed" in r.getMessage() for r in caplog.records) >= 2, 20,
                       "the service to resubscribe")
        await rig.publish(warning(Level.BLUE))
        await rig.twilio.wait_until(lambda: rig.twilio.messages_to(VILLAGE_RESP), 10, "a warning after the restart")
        assert not rig.task.done()
