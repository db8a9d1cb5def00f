"""PUBLISH packets parsed at the head of a read buffer (yujing/mqtt_reads.py); the rest is left to paho.

The packets are built by paho itself (its own PUBLISH encoder, MQTT 3.1.1 and 5 with properties), so the
parser is checked against the library whose reader it stands in for. The live path (a subscriber against
Mosquitto) is in tests/test_bus.py.
"""

from __future__ import annotations

import pytest
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from yujing.mqtt_reads import Publish, parse_publishes, publish_cut


def _publish_packet(topic: str, payload: bytes, qos: int, mid: int, *, v5: bool, retain: bool = False,
                    dup: bool = False, props: Properties | None = None) -> bytes:
    """The bytes paho sends for this PUBLISH (paho's own encoder, captured from its out queue)."""
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5 if v5 else paho.MQTTv311)
    sent: list[bytes] = []
    c._sock = object()  # paho only checks that there is one
    c._packet_queue = lambda _cmd, packet, *_: sent.append(bytes(packet))  # what it would write
    c._send_publish(mid, topic.encode(), payload, qos, retain, dup, paho.MQTTMessageInfo(mid), props)
    c._sock = None
    return sent[0]


def _parse(buf: bytes, v5: bool) -> tuple[list[Publish], int]:
    got: list[Publish] = []
    return got, parse_publishes(buf, 0, v5, got.append)


@pytest.mark.parametrize("v5", [False, True])
def test_whole_qos0_and_qos1_publishes_are_parsed_in_order_with_their_topic_payload_and_packet_id(v5):
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 60
    props.UserProperty = ("k", "v")
    packets = [
        _publish_packet("zx/readings/gw-1", b'{"id":"a"}', 1, 7, v5=v5),
        _publish_packet("zx/readings/gw-2", b"", 0, 0, v5=v5, retain=True),
        _publish_packet("zx/readings/区-3", b"x" * 20_000, 1, 65_535, v5=v5, dup=True,  # 3-byte length
                        props=props if v5 else None),
    ]
    got, end = _parse(b"".join(packets), v5)
    assert end == sum(map(len, packets))
    assert [(p.topic, p.payload, p.qos, p.mid, p.retain, p.dup) for p in got] == [
        ("zx/readings/gw-1", b'{"id":"a"}', 1, 7, False, False),
        ("zx/readings/gw-2", b"", 0, 0, True, False),
        ("zx/readings/区-3", b"x" * 20_000, 1, 65_535, False, True),
    ]


@pytest.mark.parametrize("cut", [1, 2, 5, 30])
def test_a_publish_cut_by_the_end_of_the_buffer_is_left_whole_for_the_next_read(cut):
    first = _publish_packet("t/a", b"1" * 200, 1, 1, v5=True)
    second = _publish_packet("t/b", b"2" * 200, 1, 2, v5=True)
    got, end = _parse(first + second[:cut], True)
    assert [p.mid for p in got] == [1] and end == len(first)


def test_what_is_not_a_qos0_or_qos1_publish_stops_the_parse_there_for_paho():
    one = _publish_packet("t/a", b"1", 1, 1, v5=True)
    qos2 = _publish_packet("t/b", b"2", 2, 2, v5=True)  # paho keeps QoS 2 state: its own reader
    pingresp = bytes([0xD0, 0x00])
    for tail in (qos2, pingresp):
        got, end = _parse(one + tail + one, True)
        assert [p.mid for p in got] == [1] and end == len(one)


def test_a_malformed_publish_is_left_to_paho_whose_reader_refuses_it():
    bad_topic = bytes([0x32, 0x07, 0x00, 0x02, 0xFF, 0xFE, 0x00, 0x01, 0x00])  # topic not UTF-8
    topic_past_end = bytes([0x32, 0x04, 0x00, 0x09, 0x61, 0x62])  # topic length beyond the packet
    for bad in (bad_topic, topic_past_end):
        got, end = _parse(bad, True)
        assert got == [] and end == 0


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 10, 20_010])
def test_a_publish_cut_by_the_end_of_the_buffer_says_how_many_bytes_it_needs_to_be_whole(cut):
    """What the reader keeps for its next read instead of handing the packet to paho (whose per-packet work
    was ~10 % of the collector's CPU when one 10 KiB edge batch in six straddled two reads)."""
    whole = _publish_packet("t/a", b"x" * 20_000, 1, 9, v5=True)  # a 3-byte remaining length
    part = b"\x00\x00" + whole[:cut]  # not at the buffer's start
    need = publish_cut(part, 2)
    assert need == (len(whole) if cut > 3 else cut + 1)  # the whole size once the length field is in
    assert publish_cut(b"\x00\x00" + whole, 2) == 0  # whole: nothing to wait for
    got, end = _parse(whole[:cut] + whole[cut:], True)
    assert [p.payload for p in got] == [b"x" * 20_000] and end == len(whole)


def test_only_a_cut_qos0_or_qos1_publish_is_waited_for():
    qos2 = _publish_packet("t/b", b"2" * 300, 2, 2, v5=True)
    five_length_bytes = bytes([0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])  # malformed: paho refuses it
    for other in (qos2[:50], bytes([0xD0]), five_length_bytes):
        assert publish_cut(other, 0) == 0
