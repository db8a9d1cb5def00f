"""MQTT connections for every part, and the embedded broker of the demo.

Every part connects through :func:`client`, so TLS, credentials and the
client id are handled once. Secrets come from the environment or a file
(see :class:`yujing.config.secrets.Secret`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from typing import Any, AsyncIterator

import aiomqtt

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
    """An aiomqtt client for ``cfg`` (use as ``async with``). Per-gateway credentials may override.

    Its MQTT client id is ``client_id`` + ``cfg.client_id_suffix`` (a drill's parts are never the live ones)."""
    if username is None and cfg.username is not None:
        username = cfg.username
        password = cfg.password.get() if cfg.password else None
    return aiomqtt.Client(
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
