"""The alerts section and the chain it routes on: validated at load, examples that load, routing as a table."""

from __future__ import annotations

from collections import Counter

import pytest
from testing.alerts import warning

from alerts.directory import Directory
from testing.alerts import EXAMPLE, write_config
from alerts.render import DRILL_MARK, Renderer
from alerts.route import route
from yujing.compose import load_config
from yujing.config import ConfigError
from yujing.config.areas import load_households
from yujing.model import Hazard, Level

ZHONGXIAN = EXAMPLE.parent.parent / "config" / "zhongxian"


def example(tmp_path, alerts=None):
    return load_config(write_config(tmp_path, mqtt_port=1883, prefix="cfg", twilio_url="http://127.0.0.1:1",
                                    alerts=alerts))


def test_a_template_with_an_unknown_variable_fails_at_load_naming_file_and_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        example(tmp_path, {"templates": {"landslide.red": "{site_name}滑坡{levle_cn}预警"}})
    assert "local.yaml" in str(e.value) and "levle_cn" in str(e.value)


@pytest.mark.parametrize("template", ["{site_name:d}滑坡", "{site_name:%Y}", "{title[0]}", "{evidence!z}",
                                      "{level_cn:{advice}}"])
def test_a_template_of_known_variables_that_cannot_be_rendered_fails_at_load(tmp_path, template):
    """Every variable is a string (possibly empty): a template that cannot format one fails `yujing check`, not
    the first red warning."""
    with pytest.raises(ConfigError) as e:
        example(tmp_path, {"templates": {"landslide.red": template}})
    assert "local.yaml" in str(e.value) and "landslide.red" in str(e.value)


def test_a_household_csv_with_a_bad_phone_names_its_line(tmp_path):
    (tmp_path / "h.csv").write_text("group,id,name,phone\ng1,h1,甲户,+8613900000001\ng1,h2,乙户,13900000002\n")
    with pytest.raises(ConfigError, match=r"h.csv:3: phone"):
        load_households(tmp_path / "h.csv")


@pytest.mark.parametrize("level, tiers", [
    (Level.BLUE, {"site": 2, "village": 1}),
    (Level.YELLOW, {"site": 2, "village": 1, "township": 2}),
    (Level.ORANGE, {"site": 2, "village": 2, "township": 2, "group": 2, "county": 1, "city": 1}),
    (Level.RED, {"site": 2, "village": 2, "township": 2, "group": 2, "county": 1, "city": 1, "household": 11}),
])
def test_each_level_reaches_further_down_and_up_the_chain(tmp_path, level, tiers):
    cfg = example(tmp_path)
    routed = route(warning(level), Directory.load(cfg), cfg.alerts)
    assert routed.problems == []
    assert Counter(r.tier for r in routed.recipients) == tiers
    assert all(r.ack == (level >= Level.ORANGE) for r in routed.recipients if r.tier in ("site", "township"))


def test_equipment_faults_go_to_maintainers_and_the_county_duty_office_never_to_households(tmp_path):
    cfg = example(tmp_path)
    routed = route(warning(Level.RED, hazard=Hazard.EQUIPMENT), Directory.load(cfg), cfg.alerts)
    assert {r.person.role.value for r in routed.recipients} == {"maintainer", "duty"}
    assert {r.phone for r in routed.recipients} == {"+8613911000052", "+8613911000004", "+8613911000002"}


def test_a_policy_override_replaces_one_hazard_and_level_only(tmp_path):
    cfg = example(tmp_path, {"policy": {"landslide": {"red": [{"scope": "household", "within": "township"}]}}})
    d = Directory.load(cfg)
    red = route(warning(Level.RED), d, cfg.alerts).recipients
    assert len(red) == 14 and {r.tier for r in red} == {"household"}  # both villages' households
    assert len(route(warning(Level.ORANGE), d, cfg.alerts).recipients) == 10


def test_the_zhongxian_deployment_routes_a_red_landslide_to_its_households():
    cfg = load_config(ZHONGXIAN)
    d = Directory.load(cfg)
    site = next(s for s in cfg.sites if s.kind == "landslide")
    w = warning(Level.RED).model_copy(update={"site": site.id, "area": site.area})
    routed = route(w, d, cfg.alerts)
    assert routed.problems == [] and any(r.tier == "household" for r in routed.recipients)


def test_a_red_calls_every_household_unless_its_csv_row_says_sms_only(tmp_path):
    """立即转移 calls every household (the default policy's red: SMS and voice). The Zhong County CSV has no
    channels column: each household there must be both texted and called, not texted only."""
    cfg = load_config(ZHONGXIAN)
    site = next(s for s in cfg.sites if s.kind == "landslide")
    w = warning(Level.RED).model_copy(update={"site": site.id, "area": site.area})
    households = [r for r in route(w, Directory.load(cfg), cfg.alerts).recipients if r.tier == "household"]
    assert households and all(set(r.channels) == {"sms", "voice"} for r in households)
    (tmp_path / "h.csv").write_text("group,id,name,phone,channels\ng1,h1,甲户,+8613900000001,sms\n"
                                    "g1,h2,乙户,+8613900000002,\n")
    by_id = {p.id: [c.value for c in p.channels] for p in load_households(tmp_path / "h.csv")["g1"]}
    assert by_id == {"h1": ["sms"], "h2": ["sms", "voice"]}


def test_drill_texts_start_with_the_drill_mark_and_lifts_ask_for_nothing():
    r = Renderer({})
    assert r.text(warning(Level.RED, drill=True), "某隐患点", [], ack=True).startswith(DRILL_MARK)
    lift = warning(Level.RED, version=2, state=__import__("yujing.model").model.WarningState.LIFTED)
    assert "解除" in r.text(lift, "某隐患点", [], ack=True) and "确认" not in r.text(lift, "某隐患点", [], ack=True)


def test_a_person_with_another_language_gets_that_template_and_everyone_else_chinese():
    r = Renderer({"en:*.red": "RED {hazard_cn} warning at {site_name}. {confirm}"})
    assert r.text(warning(Level.RED), "Site A", [], language="en").startswith("RED 滑坡 warning at Site A")
    assert r.text(warning(Level.RED), "Site A", [], language="zh").startswith("滑坡红色预警")
    assert r.text(warning(Level.ORANGE), "Site A", [], language="en").startswith("滑坡橙色预警")  # no en orange
    with pytest.raises(ValueError, match="unknown variable"):
        Renderer({"en:*.red": "{nope}"})
