"""Delivery under a provider's bad days: retries without duplicates, priority order, per-channel rate limits."""

from __future__ import annotations

from collections import Counter

from testing.alerts import warning

from testing.alerts import running_alerts
from conftest import wait_for
from alerts.provider import PROVIDER_ERRORS
from yujing.model import Hazard, Level

SLOW = {"sms": {"per_s": 8, "burst": 1, "concurrency": 1}, "voice": {"per_s": 25, "burst": 1, "concurrency": 1}}


def errors(reason: str) -> float:
    return PROVIDER_ERRORS.labels(reason=reason)._value.get()


async def test_429_5xx_and_lost_answers_are_retried_with_backoff_and_nobody_is_told_twice(mosquitto, prefix, tmp_path):
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}}) as rig:
        tw = rig.twilio
        before = errors("rate-limited"), errors("server-error"), errors("network")
        tw.fail_next(3, 429, kinds=("sms",))
        tw.fail_next(2, 503, kinds=("sms",))
        tw.fail_next(2, 0, kinds=("sms",))  # the connection drops before Twilio saw it
        tw.fail_next(2, 0, kinds=("sms",), after_create=True)  # Twilio created it; the answer was lost
        await rig.publish(warning(Level.YELLOW))
        expected = {"+8613911000050", "+8613911000051", "+8613911000020", "+8613911000011", "+8613911000010"}
        await tw.wait_until(lambda: {m.to for m in tw.messages} >= expected, 20, "every yellow SMS despite errors")
        await rig.settled()
        assert Counter(m.to for m in tw.messages) == Counter(expected)  # once each
        assert sum(1 for _, method, path, _ in tw.requests if path.endswith("Messages.json")) > len(expected)
        after = errors("rate-limited"), errors("server-error"), errors("network")
        assert after[0] - before[0] == 3 and after[1] - before[1] == 2 and after[2] - before[2] == 4
        assert all(s == "sent" or s == "delivered" for s in
                   (n.status for n in rig.pipeline().nflog.notifications.for_warning_key(warning().key)))


async def test_red_goes_out_before_blue_and_each_channel_keeps_its_rate(mosquitto, prefix, tmp_path):
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0}, "rates": SLOW}) as rig:
        tw = rig.twilio
        blue = warning(Level.BLUE, site="RG-XINLE-01", hazard=Hazard.RAINSTORM)
        await rig.publish(blue, warning(Level.RED))
        await tw.wait_until(lambda: any("蓝色" in m.body for m in tw.messages)
                            and len([m for m in tw.messages if "红色" in m.body]) >= 20, 30, "both warnings")
        await rig.settled(30)
        order = ["red" if "红色" in m.body else "blue" for m in tw.messages]
        # the blue came first and its first SMS was already on its way; the red, queued a moment later, overtook the rest
        assert order == ["blue"] + ["red"] * (len(order) - 2) + ["blue"], order
        sms = sorted(m.created for m in tw.messages)
        span = sms[-1] - sms[0]
        assert span >= (len(sms) - 1) / 8 * 0.9, (len(sms), span)  # 8 per second, no faster


async def test_a_provider_outage_longer_than_the_retries_defers_notifications_instead_of_losing_them(
        mosquitto, prefix, tmp_path):
    async with running_alerts(tmp_path, mqtt_port=mosquitto.port, prefix=prefix,
                              alerts={"grouping": {"wait_s": 0},
                                      "twilio": {"retries": 1, "backoff_s": 0.02, "outage_retry_s": 0.3}}) as rig:
        tw = rig.twilio
        tw.fail_next(12, 503, kinds=("sms",))  # each of the 3 SMS: 2 attempts per round, twice over
        await rig.publish(warning(Level.BLUE))
        await wait_for(lambda: any(e[3] == "sms-deferred" for e in rig.events()), 10, "deferral")
        expected = {"+8613911000050", "+8613911000051", "+8613911000020"}
        await tw.wait_until(lambda: {m.to for m in tw.messages} == expected, 20, "delivery once Twilio is back")
        await rig.settled()
        assert Counter(m.to for m in tw.messages) == Counter(expected)
        assert not [n for n in rig.pipeline().nflog.notifications.for_warning_key(warning().key) if n.status == "failed"]
