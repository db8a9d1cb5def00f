"""MQTT connections for every part, and the embedded broker of the demo.

Every part connects through :func:`client`, so TLS, credentials and the
client id are handled once. Secrets come from the environment or a file
(see :class:`yujing.config.secrets.Secret`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any, AsyncIterator

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from yujing.config.mqtt import MqttConfig

log = logging.getLogger("yujing.mqtt")


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    if cfg.tls is None:
        return None
    ctx = ssl.create_default_context(cafile=str(cfg.tls.ca_file) if cfg.tls.ca_file else None)
    if cfg.tls.cert_file:
        ctx.load_cert_chain(str(cfg.tls.cert_file), str(cfg.tls.key_file) if cfg.tls.key_file else None)
    if cfg.tls.insecure:
        ctx.check_hostname = False
    return ctx


NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


class Refused(aiomqtt.MqttCodeError):
    """The broker answered a QoS 1 PUBLISH with a failure reason code (MQTT 5: ≥ 0x80, e.g. 0x87 "not
    authorised" when its ACL does not let this client write the topic): it did not take the message, and
    will refuse it again as it is. The link itself is fine.

    An ``MqttError``, so a caller that does not handle it treats it as a broken link (reconnects with
    backoff, the message stays wherever it was kept): never as a delivery.
    """

    def __init__(self, topic: str, reason: ReasonCode) -> None:
        super().__init__(reason, f"the broker refused a publish on {topic}")
        self.topic = topic
        self.code = reason.value
        self.reason = reason.getName()


class Client(aiomqtt.Client):
    """aiomqtt's client, whose QoS 1/2 ``publish`` raises :class:`Refused` when the broker's PUBACK (PUBREC)
    carries a failure reason code.

    aiomqtt 2.5.1 (the latest) drops the reason code paho hands its ``on_publish`` (paho 2.x: ``mid,
    reason_code, properties``), so a refused publish returned as if delivered: a gateway whose ACL did not
    allow its readings topic deleted every reading from its outbox. Here the waiter aiomqtt keeps per
    packet id is a future that gets the reason code. This and :mod:`yujing.bus` are the only places that
    use aiomqtt's private parts (``_client``: paho's client; ``_pending_call``, ``_pending_publishes``,
    ``_wait_for``, ``_outgoing_calls_sem``, ``_on_publish``), so a rename breaks here, in one place.
    """

    async def publish(  # type: ignore[override]
        self, /, topic: str, payload: Any = None, qos: int = 0, retain: bool = False,
        properties: Any = None, *args: Any, timeout: float | None = None, **kwargs: Any,
    ) -> None:
        if qos == 0:  # nothing comes back to read a reason from
            await super().publish(topic, payload, qos, retain, properties, *args, timeout=timeout, **kwargs)
            return
        sem = self._outgoing_calls_sem
        async with sem if sem is not None else contextlib.nullcontext():
            info = self._client.publish(topic, payload, qos, retain, properties, *args, **kwargs)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                lost = self._disconnected
                cause = lost.exception() if lost.done() and not lost.cancelled() else None
                raise aiomqtt.MqttCodeError(info.rc, "Could not publish message") from cause
            acked: asyncio.Future[ReasonCode] = asyncio.get_running_loop().create_future()
            with self._pending_call(info.mid, acked, self._pending_publishes):  # type: ignore[arg-type]
                reason = await self._wait_for(acked, timeout=timeout)
        if reason.is_failure:
            raise Refused(topic, reason)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                    properties: Any) -> None:
        waiter = self._pending_publishes.pop(mid, None)
        if isinstance(waiter, asyncio.Future):
            if not waiter.done():
                waiter.set_result(reason_code)
        elif waiter is not None:  # aiomqtt's own (QoS 0): an event
            waiter.set()


def client(
    cfg: MqttConfig,
    client_id: str,
    *,
    clean_session: bool = True,
    max_inflight: int | None = None,
    max_queued_outgoing: int | None = None,
    username: str | None = None,
    password: str | None = None,
    **extra: object,
) -> aiomqtt.Client:
    """An aiomqtt client for ``cfg`` (use as ``async with``; a :class:`Client`: a publish the broker refuses
    raises :class:`Refused`). Per-gateway credentials may override.

    Its MQTT client id is ``client_id`` + ``cfg.client_id_suffix`` (a drill's parts are never the live ones)."""
    if username is None and cfg.username is not None:
        username = cfg.username
        password = cfg.password.get() if cfg.password else None
    return Client(
        cfg.host,
        cfg.port,
        identifier=client_id + cfg.client_id_suffix,
        username=username,
        password=password,
        tls_context=tls_context(cfg),
        keepalive=cfg.keepalive_s,
        clean_session=clean_session,
        max_inflight_messages=max_inflight,
        max_queued_outgoing_messages=max_queued_outgoing,
        # no Nagle: a QoS 1 PUBLISH or PUBACK written while the previous small packet is unacknowledged
        # otherwise waits for the peer's delayed ACK (40 ms on Linux); it was most of a reading's way to its
        # warning (bench/phone.py)
        socket_options=extra.pop("socket_options", NO_DELAY),
        **extra,  # type: ignore[arg-type]
    )


def _own_retained_only() -> type:
    """amqtt's Broker, serving a client only the retained messages of topic filters it subscribed to.

    amqtt (0.11, 0.12 and its main branch as of this writing) publishes, on every CONNECT, the retained messages
    matching every filter *any* client holds (broker.py: "publish retained messages to a pre-existing session's
    subscriptions" loops over the broker's whole subscription table). So a client saw topics it never asked
    for: a drill on the demo's broker received the live system's retained heartbeats, and the live parts
    a drill's. amqtt has no hook for this; the one method both paths go through is narrowed here.
    """
    from amqtt.broker import Broker

    class OwnRetainedOnly(Broker):  # type: ignore[misc]
        async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                              session: Any) -> None:
            holders = self._subscriptions.get(subscription[0], [])
            if any(held.client_id == session.client_id for held, _ in holders):
                await super()._publish_retained_messages_for_subscription(subscription, session)

    return OwnRetainedOnly


@contextlib.asynccontextmanager
async def embedded_broker(host: str, port: int) -> AsyncIterator[None]:
    """An in-process MQTT broker (amqtt) for the demo: no Mosquitto needed. Slow; never for production."""
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    broker = _own_retained_only()(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True},
            "topic-check": {"enabled": False},
        }
    )
    await broker.start()
    log.info("embedded MQTT broker listening on %s:%d", host, port)
    try:
        yield
    finally:
        await broker.shutdown()
