"""Every parser that reads outside input survives hostile input: it accepts, or it rejects with its own typed error.

Property-based (hypothesis): arbitrary bytes, structured-but-wrong JSON, mutated frames and YAML, hostile text
in warnings. "No crash" means: no exception other than the parser's documented rejection, and no hang.
"""

from __future__ import annotations

import json
import math
import re
import struct
import urllib.parse
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

import aiohttp

from alerts import cap
from alerts.cap import CapBook
from alerts.config import AlertsConfig, WebhookConfig
from alerts.webhooks import Webhooks
from alerts.channels import CallbackUrls
from alerts.channels.voice import twiml
from alerts.nflog import Notification
from yujing.wire import Reject, decode
from testing.payloads import FEW, FUZZ, VALID, payloads
from edge.devices.modbus import map as modbus_map
from edge.devices.modbus.config import ModbusRegister
from edge.devices.serial_ascii.config import SerialAsciiDevice
from edge.devices.serial_ascii.reader import parse_line
from edge.devices.sl651 import frame as sl
from rules.service import parse_readings
from yujing.compose import load_config
from yujing.errors import ConfigError, PayloadError
from yujing.model import Hazard, HazardWarning, Level, Quality, Reading, WarningState

MAX_BYTES = 64 * 1024

# --- MQTT reading payloads -------------------------------------------------------------------------


def _acceptable(r: Reading) -> None:
    assert isinstance(r, Reading)
    assert math.isfinite(r.value) or r.quality is not Quality.OK
    assert r.ts.utcoffset() == timedelta(0)


@FUZZ
@given(payloads())
def test_collector_decode_accepts_a_valid_reading_or_raises_payload_error_with_a_known_reason(raw: bytes):
    try:
        readings = decode(raw, "yujing/readings/gw9", MAX_BYTES)
    except PayloadError as e:
        assert e.reason in set(Reject), e
        assert e.topic == "yujing/readings/gw9"
        return
    assert readings
    for r in readings:
        _acceptable(r)
        assert r.gateway  # filled from the batch or the topic


@FUZZ
@given(st.builds(dict, value=st.floats(allow_nan=False, allow_infinity=False),
                 quality=st.sampled_from([q.value for q in Quality]), site=st.text(min_size=1, max_size=64)))
def test_collector_decode_keeps_every_valid_reading_exactly(change: dict):
    doc = {**VALID, **change}
    (r,) = decode(json.dumps(doc).encode(), "yujing/readings/gw9", MAX_BYTES)
    assert (r.value, r.quality.value, r.site, r.gateway) == (doc["value"], doc["quality"], doc["site"], "gw9")


@pytest.mark.parametrize("raw", [b"[" * 5000, b'{"readings":' * 3000, b"1" * 5000])
def test_collector_decode_rejects_deep_nesting_and_huge_numbers_as_json(raw: bytes):
    with pytest.raises(PayloadError) as e:
        decode(raw, "t/gw", MAX_BYTES)
    assert e.value.reason is Reject.JSON


def test_collector_decode_rejects_oversize_before_parsing():
    with pytest.raises(PayloadError) as e:
        decode(b"x" * (MAX_BYTES + 1), "t/gw", MAX_BYTES)
    assert e.value.reason is Reject.OVERSIZE


@FUZZ
@given(payloads())
def test_rules_read_a_payload_exactly_as_the_collector_does(raw: bytes):
    """One codec: rules accept what the collector accepts, and refuse the rest for the collector's reason."""
    try:
        expected = decode(raw, "yujing/readings/gw", 1 << 24)
    except PayloadError as e:
        with pytest.raises(PayloadError) as got:
            parse_readings(raw, "yujing/readings/gw")
        assert got.value.reason == e.reason
        return
    assert parse_readings(raw, "yujing/readings/gw") == expected


@pytest.mark.parametrize("raw", [b"[" * 5000, b'{"a":' * 5000, b'{"id": "r", "value": ' + b"9" * 5000 + b"}"])
def test_rules_refuse_deep_nesting_and_huge_numbers_as_json(raw: bytes):
    with pytest.raises(PayloadError) as e:
        parse_readings(raw)
    assert e.value.reason == Reject.JSON


# --- SL 651 frames ---------------------------------------------------------------------------------

station = st.text("0123456789", min_size=10, max_size=10)
frames = st.builds(sl.Frame, station=station, function=st.integers(0, 255), body=st.binary(max_size=300),
                   centre=st.integers(0, 255), password=st.integers(0, 0xFFFF), upward=st.booleans(),
                   end=st.sampled_from([sl.ETX, sl.ETB, sl.ENQ, sl.EOT, sl.ESC]),
                   packet=st.one_of(st.none(), st.integers(1, 4095).flatmap(
                       lambda n: st.tuples(st.just(n), st.integers(1, n)))))


@FUZZ
@given(frames)
def test_sl651_encode_then_decode_gives_the_same_frame(frame: sl.Frame):
    assert sl.decode(frame.encode()) == frame


@FUZZ
@given(frames, st.data())
def test_sl651_any_single_corrupted_byte_is_a_frame_error(frame: sl.Frame, data):
    raw = bytearray(frame.encode())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(sl.FrameError) as e:
        sl.decode(bytes(raw))
    assert e.value.reason in {"start", "short", "length", "crc"}


@FUZZ
@given(st.one_of(st.binary(max_size=400), st.binary(max_size=400).map(lambda b: sl.SOF + b)))
def test_sl651_decode_of_random_bytes_is_a_frame_or_a_frame_error(raw: bytes):
    try:
        frame = sl.decode(raw)
    except sl.FrameError as e:
        assert e.reason in {"start", "short", "length", "crc", "bcd", "packet"}
        return
    assert frame.encode() == raw  # only a genuinely valid frame gets through


@FUZZ
@given(st.lists(st.binary(max_size=80), max_size=8), frames, st.binary(max_size=60), st.binary(max_size=60))
def test_sl651_deframer_survives_junk_and_still_finds_the_frame(chunks: list[bytes], frame: sl.Frame,
                                                                before: bytes, after: bytes):
    d = sl.Deframer()
    for c in chunks:  # arbitrary garbage: only Frames and FrameErrors come out, and the buffer stays bounded
        for item in d.feed(c):
            assert isinstance(item, (sl.Frame, sl.FrameError))
        assert len(d.buf) <= sl.OVERHEAD + sl.MAX_BODY
    assume(b"\x7e" not in before[-1:])  # a trailing 7E would glue onto the frame's own 7E 7E
    d = sl.Deframer()
    out = d.feed(before + frame.encode() + after)
    assert frame in [o for o in out if isinstance(o, sl.Frame)]


@FUZZ
@given(st.binary(max_size=200))
def test_sl651_parse_report_of_random_body_is_a_report_or_a_frame_error(body: bytes):
    try:
        rep = sl.parse_report(body)
    except sl.FrameError as e:
        assert e.reason in {"body", "bcd", "time"}
        return
    assert len(rep.station) == 10 and rep.station.isdigit()


beijing_times = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(
    lambda t: t.replace(microsecond=0, tzinfo=sl.BEIJING))
plain_idents = st.integers(0x01, 0xEF)  # one-byte identifiers that are not F0/F1/F4/F5 markers


@st.composite
def elements(draw) -> tuple[int, float | None, bytes]:
    ident = draw(plain_idents)
    n = draw(st.integers(1, 5))
    dec = draw(st.integers(0, 3))
    if draw(st.integers(0, 5)) == 0:
        return ident, None, sl.element(ident, None, n, dec)
    units = draw(st.integers(-(10 ** (2 * n) - 1), 10 ** (2 * n) - 1))
    value = units / 10 ** dec
    return ident, value, sl.element(ident, value, n, dec)


@FUZZ
@given(st.integers(0, 0xFFFF), beijing_times, station, st.integers(0, 255), beijing_times,
       st.lists(elements(), max_size=6, unique_by=lambda e: e[0]))
def test_sl651_report_body_round_trips(serial, sent, stn, stype, observed, elems):
    body = sl.report_body(serial, sent, stn, stype, observed, [e[2] for e in elems])
    rep = sl.parse_report(body)
    assert (rep.serial, rep.station, rep.station_type) == (serial, stn, stype)
    assert rep.sent_at == sent and rep.observed_at == observed.replace(second=0)
    assert rep.elements == pytest.approx({ident: v for ident, v, _ in elems})


# --- serial ASCII lines ----------------------------------------------------------------------------

CSV = SerialAsciiDevice(id="aw1", site="s1", type="serial_ascii", port="/dev/null", delimiter=",",
                        fields=[{"quantity": "rain_mm", "key": 0}, {"quantity": "level_m", "key": 2, "scale": 0.01}])
REGEX = SerialAsciiDevice(id="aw2", site="s1", type="serial_ascii", port="/dev/null",
                          pattern=r"R=(?P<r>[-+0-9.eE]+)\s+L=(?P<l>\S+)",
                          fields=[{"quantity": "rain_mm", "key": "r"}, {"quantity": "level_m", "key": "l"}])

line_text = st.one_of(st.text(max_size=120),
                      st.lists(st.one_of(st.text(",0123456789.-e naif", max_size=8), st.text(max_size=8)),
                               max_size=5).map(",".join),
                      st.tuples(st.text("0123456789.-+eE", max_size=8), st.text(max_size=12))
                      .map(lambda t: f"R={t[0]} L={t[1]}"))


@FUZZ
@given(line_text, st.sampled_from([CSV, REGEX]))
def test_serial_ascii_line_is_samples_or_a_payload_error(line: str, device: SerialAsciiDevice):
    try:
        samples = parse_line(device, line)
    except PayloadError as e:
        assert e.reason in {"parse", "value"}
        return
    assert [s.quantity for s in samples] == [f.quantity for f in device.fields]
    assert all(isinstance(s.value, float) for s in samples)


@FUZZ
@given(st.floats(allow_nan=False, allow_infinity=False, width=32), st.integers(-10**6, 10**6))
def test_serial_ascii_a_well_formed_line_gives_its_values(rain: float, level: int):
    a, b = parse_line(CSV, f"{rain!r}, junk ,{level}\r\n")
    assert a.value == rain and b.value == pytest.approx(level * 0.01)


# --- Modbus words ----------------------------------------------------------------------------------

TYPES = [t for t in modbus_map.WORDS if t != "bool"]
ORDERS = ["ABCD", "DCBA", "BADC", "CDAB"]


@FUZZ
@given(st.sampled_from(TYPES), st.sampled_from(ORDERS), st.data())
def test_modbus_any_register_words_decode_to_a_float(type_: str, order: str, data):
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=modbus_map.WORDS[type_],
                               max_size=modbus_map.WORDS[type_]))
    reg = ModbusRegister(quantity="q", address=0, type=type_, order=order, scale=0.1, offset=-5)
    v = modbus_map.decode(reg, words)
    assert isinstance(v, float)
    if type_.startswith(("int", "uint")):
        assert math.isfinite(v)  # integers always scale to a finite value; NaN/inf only from float registers


@FUZZ
@given(st.sampled_from(TYPES), st.sampled_from(ORDERS), st.data())
def test_modbus_encode_then_decode_returns_the_raw_value(type_: str, order: str, data):
    bits = 16 * modbus_map.WORDS[type_]
    if type_.startswith("uint"):
        value: float = data.draw(st.integers(0, (1 << bits) - 1))
    elif type_.startswith("int"):
        value = data.draw(st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1))
    else:
        value = data.draw(st.floats(width=32 if type_ == "float32" else 64))
    reg = ModbusRegister(quantity="q", address=0, type=type_, order=order)
    words = modbus_map.encode(value, type_, order)
    assert len(words) == modbus_map.WORDS[type_] and all(0 <= w <= 0xFFFF for w in words)
    out = modbus_map.decode(reg, words)
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(out)  # passed through for the reader to flag, not raised
    else:
        assert out == value


@FUZZ
@given(st.sampled_from(TYPES), st.lists(st.integers(0, 0xFFFF), max_size=6))
def test_modbus_wrong_word_count_is_a_value_error(type_: str, words: list[int]):
    assume(len(words) != modbus_map.WORDS[type_])
    with pytest.raises(ValueError, match="registers"):
        modbus_map.decode(ModbusRegister(quantity="q", address=0, type=type_), words)


def test_modbus_float_nan_and_inf_pass_through_unscaled():
    reg = ModbusRegister(quantity="q", address=0, type="float32", scale=2.0, offset=1.0)
    assert math.isnan(modbus_map.decode(reg, [0x7FC0, 0]))
    assert modbus_map.decode(reg, [0x7F80, 0]) == math.inf
    assert modbus_map.decode(reg, [0xFF80, 0]) == -math.inf


# --- YAML configuration ----------------------------------------------------------------------------

BASE_YAML = """\
deployment:
  name: fuzz
  timezone: Asia/Shanghai
  data_dir: var
mqtt:
  host: 127.0.0.1
  port: 1883
"""
yaml_scalar = st.one_of(st.sampled_from(["", "~", "[]", "{}", "-1", "1e999", ".nan", "yes", "!!binary AAAA",
                                         "&b 1", "*b", "*nope", "'", '"', "{", "[", ": :", "- - -", "\t", "%YAML 9",
                                         "!!python/object:os.system ls", "2026-12-31", "0x1F", "\"\\x00\""]),
                        st.text(max_size=20))


@st.composite
def yaml_texts(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "bytes", "insert", "replace", "truncate"]))
    if kind == "random":
        return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    text = BASE_YAML
    if kind == "truncate":
        return text[:draw(st.integers(0, len(text)))].encode()
    lines = text.splitlines()
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "insert":
        lines.insert(i, draw(st.sampled_from(["", "  ", "    "])) + draw(st.text(max_size=20)) + ": "
                     + draw(yaml_scalar))
    else:
        key = lines[i].split(":")[0]
        lines[i] = key + ": " + draw(yaml_scalar)
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@FEW
@given(yaml_texts())  # any bytes: not UTF-8, control characters, tags, impossible dates
def test_config_load_of_mutated_yaml_is_a_config_or_a_config_error(tmp_path_factory, raw: bytes):
    d = tmp_path_factory.mktemp("cfg")
    f = d / "deployment.yaml"
    f.write_bytes(raw)
    try:
        cfg = load_config(f)
    except ConfigError as e:
        assert e.problems and all(isinstance(p, str) and p for p in e.problems)
        assert any(str(f) in p for p in e.problems), e.problems  # names the file
        return
    assert cfg.deployment.name


def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path):
    (tmp_path / "deployment.yaml").write_bytes(BASE_YAML.encode("gbk") + "# 忠县\n".encode("gbk"))
    with pytest.raises(ConfigError):
        load_config(tmp_path)


def test_config_file_with_a_control_character_is_a_config_error(tmp_path: Path):
    (tmp_path / "deployment.yaml").write_text(BASE_YAML.replace("fuzz", "fu\x1fzz"))
    with pytest.raises(ConfigError):
        load_config(tmp_path)


def test_config_recursive_alias_is_a_config_error(tmp_path: Path):
    (tmp_path / "deployment.yaml").write_text(BASE_YAML.replace("name: fuzz", "name: &a [*a]"))
    with pytest.raises(ConfigError):
        load_config(tmp_path)


@pytest.mark.parametrize("value", ["!foo x", "!!python/object:os.system ls", "!!int abc", "!!float x",
                                   "!!timestamp x", "2026-13-45", "2026-02-30"])
def test_config_explicit_bad_tag_is_a_config_error(tmp_path: Path, value: str):
    (tmp_path / "deployment.yaml").write_text(BASE_YAML.replace("name: fuzz", "name: " + value))
    with pytest.raises(ConfigError):
        load_config(tmp_path)


def test_config_base_yaml_loads(tmp_path: Path):
    (tmp_path / "deployment.yaml").write_text(BASE_YAML)
    assert load_config(tmp_path).mqtt.port == 1883


# --- Twilio webhook signatures ---------------------------------------------------------------------

TOKEN = "fuzz-auth-token-0123456789abcdef"
VALIDATOR = RequestValidator(TOKEN)
URL = "https://alerts.example.cn/twilio/gather?n=0a1b2c&k=real"
form = st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=40), max_size=6)


@FUZZ
@given(form, st.text(max_size=40))
def test_twilio_a_forged_signature_is_refused(params: dict[str, str], signature: str):
    assume(signature != VALIDATOR.compute_signature(URL, params))
    assert not VALIDATOR.validate(URL, params, signature)


@FUZZ
@given(form, st.text(max_size=40))
def test_twilio_a_correct_signature_is_accepted_and_any_changed_param_is_refused(params: dict[str, str], extra: str):
    sig = VALIDATOR.compute_signature(URL, params)
    assert VALIDATOR.validate(URL, params, sig)
    tampered = {**params, "Digits": extra} if params.get("Digits") != extra else {**params, "Digits": extra + "1"}
    assert not VALIDATOR.validate(URL, tampered, sig)
    assert not RequestValidator("another-token").validate(URL, params, sig)


PUBLIC = "https://alerts.example.cn"
WEBHOOK_CFG = AlertsConfig(webhook=WebhookConfig(host="127.0.0.1", port=0, public_url=PUBLIC))
paths = st.sampled_from(["/twilio/sms", "/twilio/status?n=0a1b&k=real", "/twilio/gather?n=ffff&k=drill"])


sendable = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)  # what an HTTP client can encode
http_form = st.dictionaries(sendable.filter(bool), sendable, max_size=5)


@settings(max_examples=100, deadline=None)
@given(paths, http_form, st.sampled_from(["none", "forged", "other-token", "signed", "signed-with-port"]),
       st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30))
async def test_webhook_post_is_403_unless_correctly_signed(path: str, params: dict[str, str], how: str, junk: str):
    signature = {"none": "", "forged": junk or "x", "other-token": RequestValidator("nope").compute_signature(
        PUBLIC + path, params), "signed": VALIDATOR.compute_signature(PUBLIC + path, params),
        # Twilio may sign the URL with its default port: the library's validator accepts that too
        "signed-with-port": VALIDATOR.compute_signature(PUBLIC + ":443" + path, params)}[how]
    signed = how.startswith("signed")
    assume(signed or signature != VALIDATOR.compute_signature(PUBLIC + path, params))
    hooks = Webhooks(WEBHOOK_CFG, TOKEN, pipelines={}, caps=CapBook())
    async with hooks.serving(), aiohttp.ClientSession() as http:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature:
            headers["X-Twilio-Signature"] = signature
        body = urllib.parse.urlencode(params).encode()  # as Twilio sends it
        async with http.post(f"http://127.0.0.1:{hooks.port}{path}", data=body, headers=headers) as resp:
            await resp.read()
            assert resp.status != 403 if signed else resp.status == 403, (how, resp.status)
            assert resp.status < 500


# --- CAP documents and voice TwiML -----------------------------------------------------------------

# Text XML 1.0 can carry (control characters other than tab/newline are not representable at all)
xml_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("<>&'\"\t\n]]>"),
                   max_size=80)
hostile = st.one_of(xml_text, st.sampled_from(["</Say><Dial>+15550001</Dial><Say>", "<![CDATA[x]]>",
                                               "&amp;&lt;&#0;", "\"'><Hangup/>", "]]>"]))
def _xml_norm(text: str) -> str:
    """What an XML parser hands back: line ends normalised to LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@st.composite
def warnings_(draw) -> HazardWarning:
    state = draw(st.sampled_from(list(WarningState)))
    return HazardWarning(key=draw(xml_text.filter(lambda s: s.strip())),
                         version=draw(st.integers(1, 50)), hazard=draw(st.sampled_from(list(Hazard))),
                         level=draw(st.sampled_from(list(Level))), state=state,
                         site=draw(xml_text.filter(bool)),  # a warning is placed: a site (or an area)
                         area=draw(xml_text), drill=draw(st.booleans()),
                         values=draw(st.dictionaries(xml_text, st.floats(allow_nan=False), max_size=3)),
                         issued_at=T0, updated_at=T0 + timedelta(minutes=draw(st.integers(0, 10**5))))


@settings(max_examples=120, deadline=None)
@given(warnings_(), hostile, hostile, st.booleans())
def test_cap_document_is_well_formed_and_carries_hostile_text_verbatim(w: HazardWarning, text: str, area: str,
                                                                      with_previous: bool):
    prev = w.model_copy(update={"version": w.version + 1}) if with_previous else None
    xml = cap.build(w, text, area, previous=prev)
    root = ET.fromstring(xml.encode("utf-8"))
    ns = {"c": cap.NS}
    assert root.tag == f"{{{cap.NS}}}alert"
    assert root.findtext("c:identifier", namespaces=ns) == cap.identifier(w)
    assert [i.tag for i in root] .count(f"{{{cap.NS}}}info") == 1
    assert root.findtext("c:info/c:description", namespaces=ns) == _xml_norm(cap.xml_text(text))
    assert root.findtext("c:info/c:area/c:areaDesc", namespaces=ns) == _xml_norm(cap.xml_text(area or w.site))
    assert len(root.findall("c:info/c:parameter", namespaces=ns)) == len(w.values)


def test_cap_document_with_a_control_character_is_well_formed_valid_and_marks_where_it_was():
    w = HazardWarning(key="rainstorm#s1", version=1, hazard=Hazard.RAINSTORM, level=Level.RED,
                      state=WarningState.ISSUED, site="s1", issued_at=T0, updated_at=T0)
    xml = cap.build(w, "暴雨\x01红色", "某\x1b村")
    root = ET.fromstring(xml.encode())
    assert root.findtext(f"{{{cap.NS}}}info/{{{cap.NS}}}description") == "暴雨\ufffd红色"
    assert root.findtext(f"{{{cap.NS}}}info/{{{cap.NS}}}area/{{{cap.NS}}}areaDesc") == "某\ufffd村"
    assert not list(cap_schema().iter_errors(xml))


def cap_schema():
    from upstream.cap import schema

    return schema()


@settings(max_examples=60, deadline=None)
@given(warnings_(), st.text(max_size=60), st.text(max_size=30), st.booleans())
def test_yujing_cap_document_of_any_text_is_valid_against_the_oasis_schema(w: HazardWarning, text: str, area: str,
                                                                           with_previous: bool):
    prev = w.model_copy(update={"version": w.version + 1}) if with_previous else None
    xml = cap.build(w, text, area, previous=prev, sender="yujing@county.example", sender_name="某县监测预警")
    errors = list(cap_schema().iter_errors(xml))
    assert not errors, errors[0]


def _note(body: str, ack: bool) -> Notification:
    return Notification(key="w1|+8613900000001|voice|0", warning_id="w1", warning_key="rainstorm#s1",
                        phone="+8613900000001", channel="voice", attempt=0, priority=4, body=body, ack=ack,
                        node="v1", tier="村", name="张三")


@FUZZ
@given(hostile, st.booleans(), st.integers(1, 3))
def test_voice_twiml_with_hostile_text_has_exactly_the_expected_elements(body: str, ack: bool, repeat: int):
    xml = twiml(_note(body, ack), CallbackUrls(base="https://alerts.example.cn"), "cmn-CN", "alice", False, repeat)
    root = ET.fromstring(xml.encode("utf-8"))
    assert root.tag == "Response"
    tags = [el.tag for el in root.iter()]
    says = root.findall(".//Say")
    if ack:
        assert tags == ["Response", "Gather"] + ["Say"] * repeat + ["Say"]
        (g,) = root.findall("Gather")
        assert g.get("numDigits") == "1" and g.get("action", "").startswith("https://alerts.example.cn/twilio/gather?n=")
        assert [s.text or "" for s in g] == [_xml_norm(body)] * repeat
    else:
        assert tags == ["Response"] + ["Say"] * repeat
        assert [s.text or "" for s in says] == [_xml_norm(body)] * repeat
    assert all(s.get("language") == "cmn-CN" for s in says)
