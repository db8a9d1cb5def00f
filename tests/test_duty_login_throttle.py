"""The duty office's login throttle stays bounded however many user names and addresses an unauthenticated
caller tries, and still stops password guessing at a real account (duty/throttle.py)."""

from __future__ import annotations

import aiohttp
from prometheus_client import REGISTRY
from testing.duty import CHIEF_PASSWORD, duty_office

from duty.throttle import LoginThrottle

CAP = 20


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def _login(url: str, source: str, user: str, password: str) -> tuple[int, str]:
    """One login from ``source`` (any of 127/8 reaches a loopback listener, so each is a distinct address)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http, \
            http.post(url + "/api/v1/login", json={"username": user, "password": password}) as r:
        return r.status, (await r.json()).get("error", "")


async def test_failed_logins_from_many_names_and_addresses_stay_bounded_and_a_real_account_stays_throttled(
        mosquitto, prefix, tmp_path):
    async with duty_office(tmp_path, mosquitto, prefix, duty={"login_max_tracked": CAP}) as office:
        # five guesses at chief's password, each from its own address: the address keys never block
        for n in range(5):
            assert await _login(office.url, f"127.0.1.{n + 1}", "chief", "guess") == (401, "bad-credentials")
        evicted = _sample("yujing_duty_login_throttle_evicted_total")
        # then a flood of made-up names from as many addresses: two new keys each, far past the cap
        flood = 3 * CAP
        for n in range(flood):
            assert await _login(office.url, f"127.0.2.{n + 1}", f"nobody-{n}", "x") == (401, "bad-credentials")
            assert _sample("yujing_duty_login_throttle_keys") <= CAP + 1  # the cap, plus chief's own name
        assert _sample("yujing_duty_login_throttle_evicted_total") - evicted >= 2 * flood + 5 - CAP
        # the flood did not wash out chief's count: even the right password, from a fresh address, waits
        assert await _login(office.url, "127.0.3.1", "chief", CHIEF_PASSWORD) == (429, "too-many-attempts")


def test_a_throttled_name_is_refused_within_the_window_and_forgotten_after_it():
    now = [1000.0]
    throttle = LoginThrottle(["chief"], failures=3, window_s=60.0, max_keys=100, clock=lambda: now[0])
    for n in range(3):
        assert not throttle.blocked("chief", f"10.0.0.{n}")
        throttle.failed("chief", f"10.0.0.{n}")
        now[0] += 1.0
    assert throttle.blocked("chief", "10.0.0.9")  # by the name, whatever the address
    assert not throttle.blocked("li", "10.0.0.9")
    for n in range(500):  # distinct unknown names from distinct addresses: at most max_keys of them kept
        throttle.failed(f"nobody-{n}", f"10.1.{n // 256}.{n % 256}")
    assert len(throttle) == 100 + 1 and throttle.blocked("chief", "10.0.0.9")
    now[0] += 57.0  # 60 s after chief's first failure: two of three are inside the window
    assert not throttle.blocked("chief", "10.0.0.9")
    now[0] += 60.0  # past every failure's window: nothing is remembered any more
    assert not throttle.blocked("nobody-499", "10.1.1.243")
    assert len(throttle) == 0
