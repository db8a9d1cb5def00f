"""The shipped Mosquitto config and ACL, run for real: per-gateway credentials, topic ACLs, TLS, mutual TLS.

The broker runs Debian's mosquitto.conf with deploy/mosquitto/yujing.conf in its conf.d (only paths and ports
rewritten to a temporary directory) and deploy/mosquitto/acl byte for byte, so what is tested is what is shipped.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest
from conftest import wait_for
from servers import free_port
from shipped_broker import DEPLOY, PASSWORDS, ShippedMosquitto, plain

from yujing.config.mqtt import MqttConfig, Tls
from yujing.config.secrets import Secret
from yujing.mqtt import client as yujing_client


@pytest.fixture(scope="module")
def broker() -> Iterator[ShippedMosquitto]:
    server = ShippedMosquitto().start()
    yield server
    server.cleanup()


class Inbox:
    """Everything a subscriber received, collected in the background."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def topics(self) -> list[str]:
        return [t for t, _ in self.messages]

    def has(self, topic: str, payload: bytes | None = None) -> bool:
        return any(t == topic and (payload is None or p == payload) for t, p in self.messages)


@pytest.fixture
async def collector(broker: ShippedMosquitto) -> AsyncIterator[Inbox]:
    """A subscriber with the collector's credentials, on everything it is allowed to and more (``#``)."""
    inbox = Inbox()
    async with plain(broker, "yujing-collector") as c:
        await c.subscribe("yujing/#", qos=1)

        async def collect() -> None:
            async for m in c.messages:
                inbox.messages.append((str(m.topic), bytes(m.payload)))

        task = asyncio.create_task(collect())
        yield inbox
        task.cancel()


async def test_gateway_publishes_readings_under_its_own_id(broker, collector):
    async with plain(broker, "gw-a") as gw:
        await gw.publish("yujing/readings/gw-a", b'{"n": 1}', qos=1)
    await wait_for(lambda: collector.has("yujing/readings/gw-a", b'{"n": 1}'), 5, "gw-a's own reading")


async def test_gateway_cannot_publish_as_another_gateway(broker, collector):
    async with plain(broker, "gw-a") as gw:
        # Denied publishes are dropped silently (MQTT 3.1.1 has no negative PUBACK). Mosquitto keeps one client's
        # QoS 1 messages in order, so once the allowed marker sent after them arrives, the forged ones never will.
        await gw.publish("yujing/readings/gw-b", b"forged", qos=1)
        await gw.publish("yujing/status/gw-b", b'{"online": true}', qos=1, retain=True)
        await gw.publish("yujing/readings/gw-a", b"marker", qos=1)
    await wait_for(lambda: collector.has("yujing/readings/gw-a", b"marker"), 5, "the marker after the forgeries")
    assert not collector.has("yujing/readings/gw-b")
    assert not collector.has("yujing/status/gw-b")


async def test_gateway_cannot_publish_warnings_or_cap(broker, collector):
    async with plain(broker, "gw-a") as gw:
        await gw.publish("yujing/warnings/rainstorm/RG-1", b"fake red warning", qos=1)
        await gw.publish("yujing/cap/rainstorm/RG-1", b"<alert/>", qos=1)
        await gw.publish("yujing/readings/gw-a", b"marker-2", qos=1)
    async with plain(broker, "yujing-rules") as rules:
        await rules.publish("yujing/warnings/rainstorm/RG-2", b"real warning", qos=1)
    await wait_for(lambda: collector.has("yujing/readings/gw-a", b"marker-2"), 5, "gw-a marker")
    # The collector itself may not read warnings; a viewer-like check through the alerts account:
    assert not collector.has("yujing/warnings/rainstorm/RG-1")
    async with plain(broker, "yujing-alerts") as alerts:
        await alerts.subscribe("yujing/#", qos=1)
        async with plain(broker, "gw-a") as gw:
            await gw.publish("yujing/warnings/rainstorm/RG-3", b"fake", qos=1)
        async with plain(broker, "yujing-rules") as rules:
            await rules.publish("yujing/warnings/rainstorm/RG-4", b"real", qos=1)
        got = []
        async with asyncio.timeout(5):
            async for m in alerts.messages:
                got.append(str(m.topic))
                if str(m.topic) == "yujing/warnings/rainstorm/RG-4":
                    break
        assert "yujing/warnings/rainstorm/RG-3" not in got


async def test_gateway_cannot_read_other_gateways_readings(broker):
    async with plain(broker, "gw-b") as spy:
        await spy.subscribe("yujing/#", qos=1)
        async with plain(broker, "gw-a") as gw:
            await gw.publish("yujing/readings/gw-a", b"private", qos=1)
            await gw.publish("yujing/status/gw-a", b"status", qos=1)
        await spy.publish("yujing/status/gw-b", b"own", qos=1)  # its own status: readable, the marker
        got = []
        async with asyncio.timeout(5):
            async for m in spy.messages:
                got.append(str(m.topic))
                if str(m.topic) == "yujing/status/gw-b":
                    break
        assert got == ["yujing/status/gw-b"]


async def test_anonymous_clients_are_refused(broker):
    with pytest.raises(aiomqtt.MqttError):
        async with plain(broker, None):
            pass


async def test_wrong_password_is_refused(broker):
    with pytest.raises(aiomqtt.MqttError):
        async with plain(broker, "gw-a", "not-the-password"):
            pass


async def test_password_of_one_gateway_does_not_open_another(broker):
    with pytest.raises(aiomqtt.MqttError):
        async with plain(broker, "gw-a", PASSWORDS["gw-b"]):
            pass


def tls_cfg(broker: ShippedMosquitto, **tls) -> MqttConfig:
    return MqttConfig(host="localhost", port=broker.tls_port, username="gw-a",
                      password=Secret(env="MQTT_PASSWORD_GW_A"), tls=Tls(**tls) if tls is not None else None)


async def test_yujing_client_connects_over_tls_with_the_ca(broker, collector, monkeypatch):
    monkeypatch.setenv("MQTT_PASSWORD_GW_A", PASSWORDS["gw-a"])
    cfg = tls_cfg(broker, ca_file=broker.certs / "ca.crt")
    async with yujing_client(cfg, "tls-gw-a", timeout=5) as c:
        await c.subscribe("yujing/status/gw-a", qos=1)
        await c.publish("yujing/status/gw-a", b"over-tls", qos=1)
        await c.publish("yujing/readings/gw-a", b"tls-reading", qos=1)
        async with asyncio.timeout(5):
            async for m in c.messages:
                assert bytes(m.payload) == b"over-tls"
                break
    await wait_for(lambda: collector.has("yujing/readings/gw-a", b"tls-reading"), 5, "reading sent over TLS")


async def test_tls_without_the_ca_fails_to_connect(broker, monkeypatch):
    monkeypatch.setenv("MQTT_PASSWORD_GW_A", PASSWORDS["gw-a"])
    cfg = tls_cfg(broker)  # system trust store: does not know the Yujing CA
    with pytest.raises((aiomqtt.MqttError, ssl.SSLError)):
        async with yujing_client(cfg, "tls-no-ca", timeout=5):
            pass


async def test_plain_mqtt_on_the_tls_port_is_refused(broker):
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", broker.tls_port, username="gw-a", password=PASSWORDS["gw-a"],
                                  timeout=2):
            pass


async def test_client_certificate_is_the_gateway_identity_on_the_mutual_tls_listener(broker, collector):
    cfg = MqttConfig(host="localhost", port=broker.mtls_port,
                     tls=Tls(ca_file=broker.certs / "ca.crt", cert_file=broker.certs / "gw-a.crt",
                             key_file=broker.certs / "gw-a.key"))
    async with yujing_client(cfg, "mtls-gw-a", timeout=5) as c:
        await c.publish("yujing/readings/gw-b", b"forged-mtls", qos=1)  # CN gw-a may not speak for gw-b
        await c.publish("yujing/readings/gw-a", b"mtls-reading", qos=1)
    await wait_for(lambda: collector.has("yujing/readings/gw-a", b"mtls-reading"), 5, "reading over mutual TLS")
    assert not collector.has("yujing/readings/gw-b", b"forged-mtls")


async def test_on_the_mutual_tls_listener_the_certificate_overrides_any_claimed_username(broker, collector,
                                                                                       monkeypatch):
    cfg = MqttConfig(host="localhost", port=broker.mtls_port, username="gw-b", password=Secret(env="PW_B"),
                     tls=Tls(ca_file=broker.certs / "ca.crt", cert_file=broker.certs / "gw-a.crt",
                             key_file=broker.certs / "gw-a.key"))
    monkeypatch.setenv("PW_B", PASSWORDS["gw-b"])  # even gw-b's real password does not make gw-a's cert gw-b
    async with yujing_client(cfg, "mtls-claims-b", timeout=5) as c:
        await c.publish("yujing/readings/gw-b", b"claimed-b", qos=1)
        await c.publish("yujing/readings/gw-a", b"marker-mtls-2", qos=1)
    await wait_for(lambda: collector.has("yujing/readings/gw-a", b"marker-mtls-2"), 5, "marker over mutual TLS")
    assert not collector.has("yujing/readings/gw-b", b"claimed-b")


async def test_mutual_tls_listener_refuses_a_client_without_certificate(broker, monkeypatch):
    monkeypatch.setenv("MQTT_PASSWORD_GW_A", PASSWORDS["gw-a"])
    cfg = MqttConfig(host="localhost", port=broker.mtls_port, username="gw-a",
                     password=Secret(env="MQTT_PASSWORD_GW_A"), tls=Tls(ca_file=broker.certs / "ca.crt"))
    with pytest.raises((aiomqtt.MqttError, ssl.SSLError, OSError)):
        async with yujing_client(cfg, "mtls-no-cert", timeout=2) as c:
            await c.publish("yujing/readings/gw-a", b"x", qos=1)


def test_shipped_acl_confines_every_gateway_to_its_own_topics():
    acl = (DEPLOY / "mosquitto" / "acl").read_text()
    patterns = [line.split(None, 2)[1:] for line in acl.splitlines() if line.startswith("pattern ")]
    assert patterns == [["write", "yujing/readings/%u"], ["readwrite", "yujing/status/%u"]]
    assert not re.search(r"^topic\s+(read)?write\s+yujing/readings", acl, re.MULTILINE), "nobody else writes readings"
    conf = (DEPLOY / "mosquitto" / "yujing.conf").read_text()
    assert re.search(r"^allow_anonymous false$", conf, re.MULTILINE)
    assert json.dumps(conf).count("require_certificate true") == 1


async def test_shipped_broker_keeps_a_collectors_queued_readings_across_a_restart():
    """Persistent session + persistence: what gateways publish while the collector is away survives a broker
    restart and is delivered, once each, when the collector comes back."""
    server = ShippedMosquitto().start()
    try:
        def connect(user: str, **kw) -> aiomqtt.Client:
            return plain(server, user, identifier=f"{user}-durable", **kw)

        async with connect("yujing-collector", clean_session=False) as c:
            await c.subscribe("yujing/readings/+", qos=1)
        async with connect("gw-a") as gw:
            for i in range(200):
                await gw.publish("yujing/readings/gw-a", str(i).encode(), qos=1)
        server.stop()  # SIGTERM: mosquitto writes its database
        server.start()
        got: list[int] = []
        async with connect("yujing-collector", clean_session=False) as c:
            async with asyncio.timeout(10):
                async for m in c.messages:
                    got.append(int(bytes(m.payload)))
                    if len(got) == 200:
                        break
        assert got == list(range(200))
    finally:
        server.cleanup()


# --- the whole ACL as a table: who may publish and who may read each kind of topic ------------------------------

W, R = "yujing/warnings/rainstorm/RG-1", "yujing/readings/gw-a"
CAP, DL = "yujing/cap/rainstorm/RG-1", "yujing/deadletter/bad_json"
LOSS = "yujing/loss/collector-yujing-collector"
CMD, SIL, UP = "yujing/commands/alerts", "yujing/silences", "yujing/upstream/cap/zx-met"
# Who can read each kind of topic (to observe a publish) and who may legitimately publish a marker there.
OBSERVER = {"readings": ("yujing-collector", "gw-a", R), "status": ("yujing-collector", "gw-a", "yujing/status/gw-a"),
            "warnings": ("yujing-alerts", "yujing-rules", W), "cap": ("yujing-viewer", "yujing-alerts", CAP),
            "deadletter": ("yujing-viewer", "yujing-collector", DL),
            "loss": ("yujing-rules", "yujing-collector", LOSS),
            "commands": ("yujing-alerts", "yujing-duty", CMD), "silences": ("yujing-alerts", "yujing-duty", SIL)}
LEGIT_WRITER = {"readings": "gw-a", "status": "gw-a", "warnings": "yujing-rules", "cap": "yujing-alerts",
                "deadletter": "yujing-collector", "loss": "yujing-collector", "commands": "yujing-duty",
                "silences": "yujing-duty"}


def kind(topic: str) -> str:
    return topic.split("/")[1]


async def delivered(broker, reader: str, topic: str, writer: str, marker: tuple[str, str]) -> bool:
    """Does ``writer``'s publish on ``topic`` reach ``reader`` (subscribed to it)? The marker, published after it
    by a client allowed to, ends the wait: Mosquitto routes each PUBLISH before acknowledging it, so once the
    marker has arrived the test publish, if allowed, has arrived before it."""
    payload, stop = uuid.uuid4().hex.encode(), uuid.uuid4().hex.encode()
    marker_by, marker_topic = marker
    async with plain(broker, reader, identifier=f"r-{payload.decode()}") as r:
        await r.subscribe(topic, qos=1)
        await r.subscribe(marker_topic, qos=1)
        async with plain(broker, writer, identifier=f"w-{payload.decode()}") as w:
            await w.publish(topic, payload, qos=1)
        async with plain(broker, marker_by, identifier=f"m-{payload.decode()}") as m:
            await m.publish(marker_topic, stop, qos=1)
        async with asyncio.timeout(5):
            async for msg in r.messages:
                if bytes(msg.payload) == payload:
                    return True
                if bytes(msg.payload) == stop:
                    return False
    raise AssertionError("unreachable")


@pytest.mark.parametrize(("account", "topic", "allowed"), [
    ("gw-a", R, True), ("gw-a", "yujing/status/gw-a", True), ("gw-a", "yujing/readings/gw-b", False),
    ("gw-a", "yujing/status/gw-b", False), ("gw-a", W, False), ("gw-a", CAP, False), ("gw-a", DL, False),
    ("yujing-collector", DL, True), ("yujing-collector", W, False), ("yujing-collector", R, False),
    ("yujing-rules", W, True), ("yujing-rules", CAP, False), ("yujing-rules", R, False),
    ("yujing-rules", "yujing/status/gw-a", False),
    ("yujing-alerts", W, False), ("yujing-alerts", CAP, True), ("yujing-alerts", R, False),
    ("yujing-viewer", W, False), ("yujing-viewer", DL, False),
    ("yujing-central", W, True), ("yujing-central", CAP, True), ("yujing-central", DL, True),
    ("yujing-central", R, False),
    ("yujing-collector", LOSS, True), ("yujing-central", LOSS, True), ("gw-a", LOSS, False),
    ("yujing-rules", LOSS, False), ("yujing-alerts", LOSS, False),
    # the duty office issues warnings and asks alerts; nobody else but the central account may ask alerts
    ("yujing-duty", W, True), ("yujing-duty", CMD, True), ("yujing-duty", SIL, True), ("yujing-duty", CAP, False),
    ("yujing-central", CMD, True), ("gw-a", CMD, False), ("gw-a", SIL, False), ("yujing-rules", CMD, False),
    ("yujing-viewer", SIL, False),
])
async def test_acl_who_may_publish(broker, account, topic, allowed):
    observer, marker_by, marker_topic = OBSERVER[kind(topic)]
    assert await delivered(broker, observer, topic, account, (marker_by, marker_topic)) is allowed


@pytest.mark.parametrize(("account", "topic", "allowed"), [
    ("gw-a", "yujing/status/gw-a", True), ("gw-a", "yujing/readings/gw-b", False),
    ("gw-a", "yujing/status/gw-b", False), ("gw-a", W, False), ("gw-a", CAP, False),
    ("yujing-collector", R, True), ("yujing-collector", "yujing/status/gw-b", True),
    ("yujing-collector", W, False), ("yujing-collector", DL, False),
    ("yujing-rules", R, True), ("yujing-rules", W, True), ("yujing-rules", CAP, False),
    ("yujing-alerts", W, True), ("yujing-alerts", CAP, True), ("yujing-alerts", "yujing/status/gw-b", True),
    ("yujing-alerts", R, False),
    ("yujing-viewer", W, True), ("yujing-viewer", DL, True), ("yujing-viewer", R, False),
    ("yujing-central", R, True), ("yujing-central", W, True), ("yujing-central", DL, False),
    ("yujing-rules", LOSS, True), ("yujing-central", LOSS, True), ("yujing-viewer", LOSS, True),
    ("gw-a", LOSS, False),
    ("yujing-alerts", CMD, True), ("yujing-alerts", SIL, True), ("yujing-duty", W, True), ("gw-a", CMD, False),
    ("yujing-viewer", CMD, False),
])
async def test_acl_who_may_read(broker, account, topic, allowed):
    writer = LEGIT_WRITER[kind(topic)]
    if kind(topic) in ("readings", "status"):
        writer = topic.rsplit("/", 1)[1]
    own_status = f"yujing/status/{account}"  # every account may read and write its own status topic (pattern)
    assert await delivered(broker, account, topic, writer, (account, own_status)) is allowed


# --- the edge agent as deployed: TLS, its own account ----------------------------------------------------------

async def run_gateway(broker: ShippedMosquitto, tmp: Path, username: str, collector: Inbox) -> None:
    """The edge agent for gw-a with one simulated rain gauge, configured as deploy/README.md says."""
    from edge.service import serve
    from simulators.devices import simulate_devices
    from testing.devices import deployment
    from simulators.devices.values import Constant
    from yujing.clock import Clock
    from yujing.runtime import Runtime

    gauge = {"id": "rg-a", "type": "modbus_tcp", "site": "RG-A", "host": "127.0.0.1", "port": free_port(),
             "interval_s": 0.2, "registers": [{"quantity": "rain_count_mm", "table": "input", "address": 0}]}
    gw = {"id": "gw-a", "heartbeat_s": 1, "devices": [gauge],
          "uplink": {"username": username, "password": {"env": "MQTT_PASSWORD_GW_A"}}}
    cfg = deployment(tmp, [gw], mqtt_port=broker.tls_port, prefix="yujing",
                     mqtt={"host": "localhost", "tls": {"ca_file": str(broker.certs / "ca.crt")}})
    clock = Clock()
    rt = Runtime(cfg, clock)
    async with simulate_devices(cfg.gateways[0].devices, {"rg-a": {"rain_count_mm": Constant(7)}}, clock):
        agent = asyncio.create_task(serve(rt))
        try:
            await wait_for(lambda: any(t == "yujing/readings/gw-a" and b'"rg-a"' in p for t, p in collector.messages)
                           or agent.done(), 10, "a reading of rg-a through the broker")
        finally:
            rt.stop.set()
            await asyncio.wait_for(agent, 10)


async def test_gateway_configured_as_the_readme_says_delivers_over_tls(broker, collector, tmp_path, monkeypatch):
    monkeypatch.setenv("MQTT_PASSWORD_GW_A", PASSWORDS["gw-a"])
    await run_gateway(broker, tmp_path, "gw-a", collector)
    assert any(t == "yujing/readings/gw-a" and b'"rg-a"' in p for t, p in collector.messages)
    status = [json.loads(p) for t, p in collector.messages if t == "yujing/status/gw-a"]
    assert status and status[0]["gateway"] == "gw-a"
