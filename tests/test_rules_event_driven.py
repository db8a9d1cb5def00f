"""A camera that publishes only on detection is never 'silent'; a polled gauge is."""

from datetime import datetime, timedelta, timezone

import yaml

from rules.engine import Engine
from yujing.compose import load_config
from yujing.model import Hazard


def test_silent_mqtt_camera_is_not_an_equipment_fault_but_a_silent_gauge_is(tmp_path):
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({
        "areas": [{"id": "c", "name": "县", "tier": "county"}],
        "sites": [{"id": "F1", "name": "林区", "kind": "forest", "area": "c"},
                  {"id": "R1", "name": "雨量站", "kind": "rain", "area": "c"}],
        "gateways": [{"id": "gw", "devices": [
            {"id": "cam", "type": "mqtt", "site": "F1", "topic": "cams/cam",
             "fields": [{"quantity": "smoke_confidence", "value": "confidence"}]},
            {"id": "rg", "type": "modbus_tcp", "site": "R1", "interval_s": 60,
             "registers": [{"quantity": "rain_count_mm", "address": 0}]}]}],
    }, allow_unicode=True))
    engine = Engine(load_config(tmp_path))
    t0 = datetime(2026, 7, 1, tzinfo=timezone.utc)
    engine.tick(t0)
    warnings = engine.tick(t0 + timedelta(hours=2))
    silent = {w.key for w in warnings if w.hazard is Hazard.EQUIPMENT}
    assert silent == {"equipment:rg"}
