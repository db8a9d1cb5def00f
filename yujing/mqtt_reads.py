"""A subscriber's socket reads: large reads, a way to pause them, and PUBLISH packets parsed here.

paho reads each packet's fixed header, length and body with separate ``recv`` calls, and aiomqtt wakes it
once per readable event, i.e. once per packet; then, per PUBLISH, it unpacks the MQTT 5 properties into a
``Properties`` object, builds an ``MQTTMessage`` (with an ``MQTTMessageInfo`` holding a
``threading.Condition``) and formats a debug log line. For a collector draining a backlog of one reading per
message that was over half of its CPU outside our own code (py-spy). :class:`ReadAhead` reads up to 64 KiB per
``recv``; every whole PUBLISH (QoS 0 or 1) at the head of that buffer is parsed here into a :class:`Publish`
and handed straight to the consumer; anything else (CONNACK, SUBACK, PINGRESP, DISCONNECT, QoS 2, a packet
cut by the buffer's end, a packet we cannot parse) goes through paho's own reader, which reads it from the
same buffer. Only incoming PUBLISH packets change hands: paho still owns the connection, its state and every
packet it sends.

Only paho's socket reads change (its private ``_sock_recv``, ``loop_read``, ``_in_packet`` and
``_last_bytes_received`` on this one instance, paho 2.x; aiomqtt offers no hook for either). Should paho
rename them, this module and :mod:`yujing.bus` are where it breaks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiomqtt


class Publish:
    """One PUBLISH packet, as a consumer reads it (the names of paho's ``MQTTMessage``; no properties)."""

    __slots__ = ("topic", "payload", "qos", "mid", "retain", "dup")

    def __init__(self, topic: str, payload: bytes, qos: int, mid: int, retain: bool, dup: bool) -> None:
        self.topic, self.payload, self.qos, self.mid, self.retain, self.dup = topic, payload, qos, mid, retain, dup


def parse_publishes(buf: bytes, pos: int, v5: bool, deliver: Callable[[Publish], None]) -> int:
    """Hand every whole QoS 0/1 PUBLISH from ``buf[pos:]`` to ``deliver``, in order; return where the first
    packet that is not one (or not whole, or not parseable here) starts: paho reads it from there."""
    end = len(buf)
    while pos < end:
        head = buf[pos]
        if head & 0xF0 != 0x30 or head & 0x06 > 0x02:  # not a PUBLISH, or QoS 2 (paho keeps its state)
            return pos
        i, length, shift = pos + 1, 0, 0
        while True:  # remaining length: 1-4 bytes, 7 bits each, least significant first
            if i >= end or shift > 21:
                return pos
            b = buf[i]
            i += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        stop = i + length
        if stop > end or length < 2:
            return pos
        j = i + 2 + (buf[i] << 8 | buf[i + 1])
        try:
            topic = buf[i + 2:j].decode()
        except UnicodeDecodeError:
            return pos
        qos = (head >> 1) & 3
        mid = 0
        if qos:
            mid = buf[j] << 8 | buf[j + 1] if j + 2 <= stop else -1
            j += 2
        if v5:  # properties: skipped (no consumer reads them; we never allow topic aliases)
            plen, shift = 0, 0
            while True:
                if j >= stop or shift > 21:
                    return pos
                b = buf[j]
                j += 1
                plen |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            j += plen
        if j > stop or mid < 0 or not topic:
            return pos
        deliver(Publish(topic, buf[j:stop], qos, mid, bool(head & 1), bool(head & 8)))
        pos = stop
    return pos


def publish_cut(buf: bytes, pos: int) -> int:
    """If ``buf[pos:]`` starts a QoS 0/1 PUBLISH the buffer does not hold whole: how many bytes are needed in
    all (at least; the whole packet once its length field is in), else 0 (whole, or not ours to parse)."""
    end = len(buf)
    if pos >= end or buf[pos] & 0xF0 != 0x30 or buf[pos] & 0x06 > 0x02:
        return 0
    i, length, shift = pos + 1, 0, 0
    while True:
        if shift > 21:
            return 0  # a fifth length byte: malformed, paho refuses it
        if i >= end:
            return end - pos + 1  # the length field itself is cut
        b = buf[i]
        i += 1
        length |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    size = i - pos + length
    return size if pos + size > end else 0


_MAX_READ = 4 << 20  # one read for the rest of a cut packet: at most this (a huge one takes several)


class ReadAhead:
    """paho's socket reads for one subscriber connection: large reads, PUBLISH parsed here, pausable.

    :meth:`pause` stops reading (the kernel's socket buffer fills, then TCP flow control holds the broker
    back, which keeps the messages queued for us); :meth:`resume` reads on. That is how a consumer slower
    than the wire bounds its memory by what it holds, not by message counts.

    ``on_publish``: where whole QoS 0/1 PUBLISH packets go (a :class:`Publish`); without it every packet goes
    through paho. Create one per connection, after connect.
    """

    def __init__(self, client: aiomqtt.Client, size: int = 65_536,
                 on_publish: Callable[[Publish], None] | None = None) -> None:
        self.client, self.size = client, size
        self.pc = pc = client._client  # noqa: SLF001 -- aiomqtt exposes no hook for paho's reads
        self._recv, self._loop_read = pc._sock_recv, pc.loop_read  # noqa: SLF001
        self._buf, self._pos = b"", 0
        self._cut = 0  # a PUBLISH at _pos waits for its rest: the bytes it needs in all (publish_cut)
        self.paused = False
        self.on_publish = on_publish
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
        if self.on_publish is None:
            rc = self._loop_read(max_packets)
            while rc == 0 and not self.paused and self._pending():
                rc = self._loop_read(max_packets)
            return rc
        pc, v5, read = self.pc, self.pc._protocol == 5, False  # noqa: SLF001
        while not self.paused:
            if not pc._in_packet["command"]:  # noqa: SLF001 -- paho is between packets: ours to parse
                closed = False
                if self._pos >= len(self._buf) or self._cut:
                    sock = pc._sock  # noqa: SLF001
                    if sock is None or (read and not (hasattr(sock, "pending") and sock.pending() > 0)):
                        return 0  # one socket read per wake-up (TLS: unless decrypted bytes wait unseen by epoll)
                    read = True
                    tail = self._buf[self._pos:] if self._cut else b""
                    try:
                        data = self._recv(min(_MAX_READ, max(self.size, self._cut - len(tail))))
                    except BlockingIOError:
                        return 0
                    except OSError:  # a broken link: paho's own read below meets it again and tells
                        data = b""
                    self._buf, self._pos, self._cut = tail + data, 0, 0
                    closed = not data  # paho reads what is left, then meets the end and tells
                if not closed:
                    pos = parse_publishes(self._buf, self._pos, v5, self.on_publish)
                    if pos != self._pos:
                        self._pos = pos
                        pc._last_bytes_received = time.monotonic()  # noqa: SLF001 -- paho's keepalive reads it
                        if pos >= len(self._buf):
                            continue
                    self._cut = publish_cut(self._buf, pos)
                    if self._cut:
                        continue  # its rest comes with the next read
            rc = self._loop_read(max_packets)  # one packet (or the rest of paho's) through paho
            if rc or not self._pending():
                return rc
        return 0

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
