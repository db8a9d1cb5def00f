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


class ReadAhead:
    """paho's socket reads for one subscriber connection: large reads, and a way to pause them.

    paho reads each packet's fixed header, length and body with separate ``recv`` calls, and aiomqtt
    wakes it once per readable event, i.e. once per packet: for a subscriber draining a backlog that
    is most of its CPU outside our own code. Here one ``recv`` fills a buffer that paho's reads are
    served from, and each wake-up parses every whole packet the buffer holds.

    :meth:`pause` stops reading (the kernel's socket buffer fills, then TCP flow control holds the
    broker back, which keeps the messages queued for us); :meth:`resume` reads on. That is how a
    consumer slower than the wire bounds its memory by what it holds, not by message counts.

    Only paho's socket reads change (its private ``_sock_recv`` and ``loop_read`` on this one
    instance, paho 2.x; aiomqtt offers no hook for either). Create one per connection, after connect.
    """

    def __init__(self, client: aiomqtt.Client, size: int = 65_536) -> None:
        self.client, self.size = client, size
        self.pc = pc = client._client  # noqa: SLF001 -- aiomqtt exposes no hook for paho's reads
        self._recv, self._loop_read = pc._sock_recv, pc.loop_read  # noqa: SLF001
        self._buf, self._pos = b"", 0
        self.paused = False
        pc._sock_recv = self._buffered_recv  # noqa: SLF001
        pc.loop_read = self._drain

    def _buffered_recv(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            self._buf, self._pos = self._recv(self.size), 0  # BlockingIOError if nothing waits: paho's "again"
            if not self._buf:
                return self._buf  # the peer closed
        chunk = self._buf[self._pos:self._pos + n]
        self._pos += len(chunk)
        return chunk

    def _pending(self) -> bool:
        sock = self.pc._sock  # noqa: SLF001
        if sock is None:
            return False
        return self._pos < len(self._buf) or (hasattr(sock, "pending") and sock.pending() > 0)  # TLS records

    def _drain(self, max_packets: int = 1) -> int:
        rc = self._loop_read(max_packets)
        while rc == 0 and not self.paused and self._pending():
            rc = self._loop_read(max_packets)
        return rc

    def _on_readable(self) -> None:
        """What aiomqtt's own reader callback does: read, and report a broken link as a disconnection."""
        try:
            self._drain()
        except Exception as exc:  # noqa: BLE001 -- a broken socket: the connection is over
            done = self.client._disconnected  # noqa: SLF001
            if not done.done():
                done.set_exception(exc)

    def pause(self) -> None:
        sock = self.pc.socket()
        if not self.paused and sock is not None:
            self.paused = True
            asyncio.get_running_loop().remove_reader(sock)

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        sock = self.pc.socket()
        if sock is not None:
            loop = asyncio.get_running_loop()
            loop.add_reader(sock, self._on_readable)
            loop.call_soon(self._on_readable)  # whole packets may wait in our buffer, unseen by epoll


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
