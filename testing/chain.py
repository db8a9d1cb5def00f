"""The example chain (``alerts/example``) by phone number, and its people as a drill's participants.

    cfg = example(tmp_path)                            # the example deployment, a drill liaison configured
    people = chain_people(cfg, G1_LEADER, HOME_G1)     # those configured people (a scenario's participants)

Used by tests/test_alerts_drill.py and tests/test_report_drill_page.py.
"""

from __future__ import annotations

from alerts.directory import Directory
from testing.alerts import write_config
from yujing.compose import load_config
from yujing.config.people import Person

DRILL_OFFICER = {"name": "演练联络员", "role": "duty", "phone": "+8613911900001", "channels": ["sms", "voice"]}
DRILL_HOME = {"name": "演练住户", "role": "household", "phone": "+8613911900002", "channels": ["sms"]}

# the example chain (alerts/example): LS-GONGHE-01 sits in 共和村1组 of 石宝镇
CITY_DUTY, COUNTY_DUTY = "+8613911000001", "+8613911000002"
TOWN_DUTY, TOWN_RESP, TOWN_DEPUTY = "+8613911000010", "+8613911000011", "+8613911000012"
VILLAGE_RESP, VILLAGE_GRID = "+8613911000020", "+8613911000022"
G1_LEADER, G2_LEADER, XINLE_RESP, XINLE_LEADER = "+8613911000031", "+8613911000032", "+8613911000040", "+8613911000041"
MONITOR, SITE_RESP = "+8613911000050", "+8613911000051"
HOME_G1, HOME_G1_SMS_ONLY, HOME_XINLE = "+8613911200001", "+8613911200002", "+8613911200012"
LIAISON = "+8613911900001"  # DRILL_OFFICER: configured for drills, nowhere in the chain


def example(tmp_path):
    return load_config(write_config(tmp_path / "chain", mqtt_port=1883, prefix="d", twilio_url="http://127.0.0.1:1",
                                    alerts={"drill": {"recipients": [DRILL_OFFICER]}}))


def chain_people(cfg, *phones: str) -> list[Person]:
    """The configured people of the example chain with these phones (a scenario's participants)."""
    d = Directory.load(cfg)
    people = [p for a in cfg.areas for p in a.people] + [p for s in cfg.sites for p in s.people]
    people += [p for hs in d.households.values() for p in hs]
    return [next(p for p in people if p.phone == phone) for phone in phones]
