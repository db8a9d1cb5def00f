"""`yujing rules test`: the shipped series replay to the expected warning timeline; rules validate at load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rules.backtest import replay
from rules.series import load_series
from yujing.compose import load_config
from yujing.errors import ConfigError
from yujing.model import HazardWarning

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "rules" / "examples"
DEMO = EXAMPLES / "demo"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yujing", "rules", "test", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def timeline(path: Path) -> list[tuple[str, str, str, str]]:
    ws = replay(load_config(DEMO), load_series(path))
    return [(w.updated_at.strftime("%d %H:%M"), w.key, w.state.value, w.level.value) for w in ws]


def test_the_rainstorm_series_replays_to_the_expected_timeline():
    # times UTC (Beijing − 8 h); hand-checked against rules/examples/make_series.py's story
    assert timeline(EXAMPLES / "rainstorm-3days.csv") == [
        ("14 22:05", "rainstorm:RG-SQ-01", "issued", "blue"),  # 60 mm overnight passes 50 in 12 h
        ("15 01:20", "rainstorm:RG-SQ-01", "upgraded", "yellow"),  # the downpour: 50 mm in 6 h
        ("15 01:20", "landslide:HP-GY-01", "issued", "blue"),  # rain coupled to the landslide watch
        ("15 02:20", "rainstorm:RG-SQ-01", "upgraded", "orange"),  # 50 mm in 3 h
        ("15 02:20", "torrent:RG-SQ-01", "issued", "orange"),  # 准备转移: 50 mm in 3 h
        ("15 03:25", "torrent:RG-SQ-01", "upgraded", "red"),  # 立即转移: 70 mm in 3 h
        ("15 06:16", "equipment:rg-sq-01", "issued", "yellow"),  # the link is down from 14:00 Beijing
        ("15 07:00", "equipment:rg-sq-01", "lifted", "yellow"),
        ("15 07:00", "torrent:RG-SQ-01", "downgraded", "orange"),
        ("15 08:00", "rainstorm:RG-SQ-01", "downgraded", "yellow"),
        ("15 08:00", "torrent:RG-SQ-01", "lifted", "orange"),
        ("15 10:20", "rainstorm:RG-SQ-01", "downgraded", "blue"),
        ("15 16:30", "rainstorm:RG-SQ-01", "lifted", "blue"),
        ("15 16:30", "landslide:HP-GY-01", "lifted", "blue"),
    ]


def test_the_landslide_series_steps_up_to_red_before_failure_with_a_time_to_failure_estimate():
    ws = replay(load_config(DEMO), load_series(EXAMPLES / "landslide-acceleration.csv"))
    assert [(w.state.value, w.level.value) for w in ws] == [
        ("issued", "blue"), ("upgraded", "yellow"), ("upgraded", "orange"), ("upgraded", "red")]
    red = ws[-1]
    assert red.values["tangent_angle_deg"] >= 85.0
    assert 0 < red.values["failure_in_h"] < 12  # failure is due at day 10, 5 h after the last reading
    assert any("反速度法" in e for e in red.evidence)


def test_the_backtest_command_prints_a_readable_timeline():
    p = cli(str(DEMO), "--readings", str(EXAMPLES / "rainstorm-3days.csv"))
    assert p.returncode == 0, p.stderr
    assert "863 readings" in p.stdout and "14 warning messages" in p.stdout
    assert "2026-07-15 06:05  发布  蓝色  rainstorm:RG-SQ-01 v1" in p.stdout  # Beijing time
    assert "12小时累计雨量 50.4 mm ≥ 蓝色阈值 50.0 mm" in p.stdout
    assert "双桥村雨量站山洪立即转移(红色)预警" in p.stdout


def test_the_backtest_command_prints_json_lines_on_request():
    p = cli(str(DEMO), "--readings", str(EXAMPLES / "landslide-acceleration.csv"), "--json")
    assert p.returncode == 0, p.stderr
    ws = [HazardWarning.model_validate(json.loads(line)) for line in p.stdout.splitlines()]
    assert [w.level.value for w in ws] == ["blue", "yellow", "orange", "red"]


def test_a_bad_series_is_reported_by_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,site,sensor,quantity,value\n"
                   "2026-07-14T00:00:00Z,RG-SQ-01,rg,rain_mm,1.0\n"
                   "2026-07-14T00:05:00,RG-SQ-01,rg,rain_mm,1.0\n")  # no timezone
    p = cli(str(DEMO), "--readings", str(bad))
    assert p.returncode == 2 and "bad.csv:3: ts:" in p.stderr


def test_a_json_series_replays_like_csv(tmp_path):
    rs = load_series(EXAMPLES / "landslide-acceleration.csv")
    js = tmp_path / "s.json"
    js.write_text("[" + ",".join(r.model_dump_json() for r in rs) + "]")
    assert len(replay(load_config(DEMO), load_series(js))) == 4


@pytest.mark.parametrize("yaml_text, message", [
    ("rules:\n  rain:\n    blue: {10: 50}\n", "rules.rain: Value error, blue: window 10 h is not one of [1, 3, 6, 12, 24]"),
    ("rules:\n  rain:\n    red: {3: -1}\n", "threshold for 3 h must be positive"),
    ("rules:\n  landslide:\n    angle_deg: {blue: 45, red: 95}\n", "strictly between 0 and 90"),
    ("rules:\n  fire:\n    confirmed_level: {7: red}\n", "danger ratings are 1..5"),
    ("rules:\n  torrent:\n    prepare_level: red\n    evacuate_level: orange\n", "prepare_level"),
    ("rules:\n  rain:\n    bleu: {12: 50}\n", "bleu"),
])
def test_rules_are_validated_at_load_with_file_and_line(tmp_path, yaml_text, message):
    (tmp_path / "r.yaml").write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    text = str(e.value)
    assert "r.yaml:" in text and message in text, text
