"""CAP 1.2 intake, document by document: the specification's examples and a CPEAS-shaped feed document are
schema-valid and refused for what they are here; hostile, malformed, unsigned, expired and unmappable ones are
refused with their reasons, kept in the dead-letter store and change nothing; Alert → Update → Cancel, replays,
drills, geocodes, polygons and circles map onto the tree."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cap_docs import BILLION_LAUGHS, EXTERNAL_ENTITY, SENDER, document
from prometheus_client import REGISTRY
from testing.cap import cert_and_key, sign

from duty.issuer import Issuer
from upstream.cap import Reason, Refusal, read
from upstream.config import Source
from upstream.deadletter import DeadLetters
from upstream.intake import Intake, Status
from yujing.compose import load_config
from yujing.errors import StoreError
from yujing.model import Hazard, Level, WarningState

DATA = Path(__file__).parent / "data" / "cap"
SPEC = sorted(DATA.glob("spec-*.xml"))
CN = DATA / "cn-cpeas-baoding-thunder-update.xml"
SOURCE = Source(id="zx-met", sender=SENDER, authority="忠县气象台", may_address=["county"])
SHIBAO_POLYGON = "30.38,108.16 30.38,108.22 30.47,108.22 30.47,108.16 30.38,108.16"  # both its villages


@pytest.fixture
def rig(tmp_path):
    config = load_config("alerts/example")
    issuer = Issuer(tmp_path / "issued.sqlite", config, lambda: datetime.now(timezone.utc))
    dead = DeadLetters(tmp_path / "dead.sqlite")
    intake = Intake(config, issuer, dead, lambda: datetime.now(timezone.utc), certificates={})
    yield intake
    issuer.close()
    dead.close()


def refused(intake: Intake, raw: bytes | str, source: Source = SOURCE) -> Refusal:
    with pytest.raises(Refusal) as e:
        intake.receive(raw.encode() if isinstance(raw, str) else raw, source, "test")
    assert intake.issuer.unpublished() == []  # nothing was issued: nothing half-applied
    return e.value


@pytest.mark.parametrize("path", [*SPEC, CN], ids=lambda p: p.name)
def test_specification_examples_and_a_cpeas_document_are_schema_valid_and_read(path):
    doc = read(path.read_bytes())
    assert doc.identifier and doc.sender and doc.infos


@pytest.mark.parametrize("path", [*SPEC, CN], ids=lambda p: p.name)
def test_specification_examples_from_an_unknown_sender_are_refused_and_dead_lettered(rig, path):
    assert refused(rig, path.read_bytes()).reason is Reason.UNKNOWN_SENDER
    [entry] = rig.deadletters.entries()
    assert entry["reason"] == "unknown-sender" and entry["size"] == len(path.read_bytes())


def test_spec_examples_from_their_own_configured_sender_are_refused_for_what_they_say(rig):
    def as_from(name: str, sender: str) -> Refusal:
        return refused(rig, (DATA / name).read_bytes(), Source(id="x", sender=sender))
    assert as_from("spec-a2-severe-thunderstorm.xml", "KSTO@NWS.NOAA.GOV").reason is Reason.EXPIRED
    assert as_from("spec-a4-amber-alert.xml", "KARO@CLETS.DOJ.CA.GOV").reason is Reason.UNMAPPED_EVENT
    assert as_from("spec-a1-homeland-security.xml", "hsas@dhs.gov").reason is Reason.UNMAPPED_EVENT
    cn = as_from("cn-cpeas-baoding-thunder-update.xml", "Baoding_Meteorological_Observatory")
    assert cn.reason is Reason.EXPIRED  # and, were it not, 保定 130602 is no node of this tree


@pytest.mark.parametrize("raw, reason", [
    (b"<alert", Reason.MALFORMED),
    (BILLION_LAUGHS, Reason.ENTITIES),
    (EXTERNAL_ENTITY, Reason.ENTITIES),
    (document("x1").replace("<msgType>Alert</msgType>", "").encode(), Reason.SCHEMA),
    (document("x2").replace("<status>Actual</status>", "<status>Real</status>").encode(), Reason.SCHEMA),
    (document("x3", description="长" * 200_000).encode(), Reason.OVERSIZED),
    (document("x4", expires=datetime.now(timezone.utc) - timedelta(minutes=1)).encode(), Reason.EXPIRED),
    (document("x5", geocode="130602000000").encode(), Reason.UNKNOWN_AREA),
    (document("x6", geocode=None, polygon="10,10 10,11 11,11 10,10").encode(), Reason.UNKNOWN_AREA),
    (document("x7", event="陨石", headline="陨石预警", severity="Unknown").encode(), Reason.UNMAPPED_EVENT),
    (document("x8", event="暴雨", headline="暴雨预警", severity="Unknown").encode(), Reason.UNMAPPED_LEVEL),
    (document("x9", sender="someone-else").encode(), Reason.UNKNOWN_SENDER),
    (document("x10", msg_type="Cancel", references=[("never-seen", datetime.now())]).encode(),
     Reason.UNKNOWN_REFERENCE),
], ids=lambda v: v.value if isinstance(v, Reason) else None)
def test_bad_documents_are_refused_with_their_reason_and_change_nothing(rig, raw, reason):
    assert refused(rig, raw).reason is reason
    assert rig.deadletters.entries()[0]["reason"] == reason.value


def test_a_source_may_address_only_its_own_areas(rig):
    ruxi_only = Source(id="rx", sender=SENDER, may_address=["ruxi"])
    assert refused(rig, document("p1"), ruxi_only).reason is Reason.NOT_PERMITTED


def test_gbk_encoded_document_is_read(rig):
    raw = document("gbk-1", encoding="GBK").encode("gbk")
    out = rig.receive(raw, SOURCE, "test")
    [w] = out.warnings
    assert w.headline == "忠县气象台发布暴雨橙色预警[Ⅱ级/严重]" and w.sender_name == "忠县气象台"


def test_alert_update_cancel_by_references_and_a_replay_changes_nothing(rig):
    t0 = datetime.now(timezone.utc)
    first = rig.receive(document("a1", sent=t0).encode(), SOURCE, "test")
    assert first.status is Status.ISSUED
    [w] = first.warnings
    assert (w.area, w.site, w.hazard, w.level, w.source) == ("shibao", "", Hazard.RAINSTORM, Level.ORANGE,
                                                           f"cap:{SENDER}")
    assert rig.receive(document("a1", sent=t0).encode(), SOURCE, "test").status is Status.DUPLICATE
    up = rig.receive(document("a2", msg_type="Update", references=[("a1", t0)], severity="Extreme",
                              headline="忠县气象台升级暴雨红色预警[Ⅰ级/特别严重]").encode(), SOURCE, "test")
    assert up.status is Status.UPDATED and [(x.key, x.level, x.state) for x in up.warnings] == [
        (w.key, Level.RED, WarningState.UPGRADED)]
    gone = rig.receive(document("a3", msg_type="Cancel", references=[("a2", t0)]).encode(), SOURCE, "test")
    assert gone.status is Status.CANCELLED and gone.warnings[0].state is WarningState.LIFTED
    assert [x.version for x in rig.issuer.unpublished()] == [1, 2, 3]
    assert rig.receive(document("a3", msg_type="Cancel", references=[("a2", t0)]).encode(), SOURCE,
                       "test").status is Status.DUPLICATE


def test_exercise_and_test_are_drills_and_system_and_draft_send_nothing(rig):
    [w] = rig.receive(document("e1", status="Exercise").encode(), SOURCE, "test").warnings
    assert w.drill
    [w] = rig.receive(document("e2", status="Test").encode(), SOURCE, "test").warnings
    assert w.drill
    for i, status in enumerate(("System", "Draft")):
        assert rig.receive(document(f"s{i}", status=status).encode(), SOURCE, "test").status is Status.IGNORED
    assert all(w.drill for w in rig.issuer.unpublished())


@pytest.mark.parametrize("shape, expected", [
    ({"geocode": "500233009000"}, ["shibao"]),  # a 12-digit CPEAS code of a township
    ({"geocode": "500233009001"}, ["shibao.gonghe"]),
    ({"geocode": "500233000000"}, ["county"]),
    ({"geocode": None, "polygon": SHIBAO_POLYGON}, ["shibao"]),  # both villages covered: the township
    ({"geocode": None, "circle": "30.39,108.17 2"}, ["shibao.gonghe"]),  # 共和村 and its sites only
], ids=["township-code", "village-code", "county-code", "polygon", "circle"])
def test_areas_by_geocode_polygon_and_circle(rig, shape, expected):
    out = rig.receive(document(f"g-{expected[0]}-{len(shape)}", **shape).encode(), SOURCE, "test")
    assert [w.area for w in out.warnings] == expected


def test_signed_source_takes_a_good_signature_and_refuses_missing_wrong_and_tampered_ones(rig):
    cert, key = cert_and_key()
    other_cert, other_key = cert_and_key()
    rig.certificates = {"zx-met": cert}
    assert refused(rig, document("sig1")).reason is Reason.UNSIGNED
    assert refused(rig, sign(document("sig2"), other_cert, other_key)).reason is Reason.BAD_SIGNATURE
    tampered = sign(document("sig3"), cert, key).replace("橙色".encode(), "红色".encode())
    assert refused(rig, tampered).reason is Reason.BAD_SIGNATURE
    good = sign(document("sig4"), cert, key)
    assert read(good).signed
    assert rig.receive(good, SOURCE, "test").status is Status.ISSUED


def test_the_readme_cap_source_example_is_a_valid_configuration(tmp_path):
    import re
    import shutil

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL) if b.startswith("upstream:")]
    shutil.copytree("config/zhongxian", tmp_path / "d", ignore=shutil.ignore_patterns("scenarios"))
    (tmp_path / "d" / "upstream.yaml").write_text(block)
    cfg = load_config(tmp_path / "d")
    [src] = cfg.upstream.sources
    assert src.may_address == ["zhongxian"] and src.auth is not None and src.auth.bearer is not None


def test_an_update_naming_other_areas_lifts_the_ones_it_dropped_and_issues_the_new(rig):
    t0 = datetime.now(timezone.utc)
    [first] = rig.receive(document("u1", sent=t0, geocode="500233009001").encode(), SOURCE, "test").warnings
    out = rig.receive(document("u2", msg_type="Update", references=[("u1", t0)],
                               geocode="500233009002").encode(), SOURCE, "test")
    assert out.status is Status.UPDATED
    assert sorted((w.area, w.state.value) for w in out.warnings) == [("shibao.gonghe", "lifted"),
                                                                   ("shibao.xinle", "issued")]
    rig.issuer.expire(datetime.now(timezone.utc) + timedelta(days=1))  # both lifted; an Update now issues anew
    again = rig.receive(document("u3", msg_type="Update", references=[("u2", t0)],
                                 geocode="500233009002").encode(), SOURCE, "test")
    assert [(w.area, w.state.value, w.version) for w in again.warnings] == [("shibao.xinle", "issued", 1)]


def test_a_document_with_pages_of_text_is_taken_with_its_text_cut(rig):
    out = rig.receive(document("long-1", headline="暴雨橙色预警" * 100, instruction="转移" * 3000,
                               sender_name="气象台" * 100).encode(), SOURCE, "test")
    [w] = out.warnings
    assert len(w.headline) == 200 and len(w.instruction) == 2000 and w.instruction.endswith("…")


def test_one_platform_cannot_cancel_another_platforms_warning(rig):
    t0 = datetime.now(timezone.utc)
    [w] = rig.receive(document("own-1", sent=t0).encode(), SOURCE, "test").warnings
    other = Source(id="other", sender="someone-else")
    cancel = document("x-1", sender="someone-else", msg_type="Cancel", references=[("own-1", t0)])
    # the reference names our sender's document, but comes from another sender: it is not theirs to cancel
    forged = cancel.replace("someone-else,own-1", f"{SENDER},own-1")
    with pytest.raises(Refusal) as e:
        rig.receive(forged.encode(), other, "test")
    assert e.value.reason is Reason.UNKNOWN_REFERENCE
    assert rig.issuer.get(w.key).state is WarningState.ISSUED


def _dropped() -> float:
    return REGISTRY.get_sample_value("yujing_upstream_deadletter_dropped_total") or 0.0


def test_the_dead_letter_store_keeps_only_the_newest_documents_within_its_row_and_byte_bounds(tmp_path):
    config = load_config("alerts/example")
    issuer = Issuer(tmp_path / "issued.sqlite", config, lambda: datetime.now(timezone.utc))
    dead = DeadLetters(tmp_path / "dead.sqlite", max_rows=5, max_bytes=3 * DeadLetters.KEEP_BYTES)
    intake = Intake(config, issuer, dead, lambda: datetime.now(timezone.utc), certificates={})
    before = _dropped()
    try:
        for n in range(12):  # small documents: the row bound holds
            refused(intake, document(f"r{n}", sender=f"nobody-{n}"))
        kept = dead.entries(100)
        assert [e["detail"] for e in kept] == [f"sender 'nobody-{n}' is not this source's ({SENDER!r})"
                                               for n in range(11, 6, -1)]
        assert _dropped() - before == 7
        big = b"<" + b"x" * (2 * DeadLetters.KEEP_BYTES)  # each kept as its first 64 KB: the byte bound holds
        for _ in range(4):
            intake.refuse("?", "post", Refusal(Reason.UNKNOWN_SOURCE, "no source 'probe'"), big)
        kept = dead.entries(100)
        assert [e["reason"] for e in kept] == ["unknown-source"] * 3 and kept[0]["size"] == len(big)
        assert _dropped() - before == 7 + 5 + 1  # the 5 small ones, then the first big one
        dead.close()
        # a bound tightened between runs applies when the store is opened
        dead = DeadLetters(tmp_path / "dead.sqlite", max_rows=1)
        assert [e["seq"] for e in dead.entries(100)] == [kept[0]["seq"]] and _dropped() - before == 15
    finally:
        issuer.close()
        dead.close()


def test_a_dead_letter_store_that_cannot_be_opened_says_which_file(tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(StoreError, match="upstream dead letters .*not-a-dir"):
        DeadLetters(tmp_path / "not-a-dir" / "dead.sqlite")
