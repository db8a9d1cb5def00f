"""The shipped Zhong County deployment: real townships, the plan's scale, fictitious reserved-range contacts."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from simulators.scenario import check_against, load_scenario
from yujing.compose import load_config
from yujing.config import Tier

ROOT = Path(__file__).resolve().parent.parent
ZX = ROOT / "config" / "zhongxian"
TOWNSHIPS = ("忠州街道 白公街道 乌杨街道 新生街道 任家镇 洋渡镇 东溪镇 复兴镇 石宝镇 汝溪镇 野鹤镇 官坝镇 石黄镇 马灌镇 "
             "金鸡镇 新立镇 双桂镇 拔山镇 花桥镇 永丰镇 三汇镇 白石镇 黄金镇 善广乡 石子乡 磨子土家族乡 涂井乡 金声乡 "
             "兴峰乡").split()
RESERVED = range(8613900000000, 8613900010000)  # +86 139 0000 0000..9999


@pytest.fixture(scope="module")
def cfg():
    return load_config(ZX)


def test_the_county_has_its_29_real_townships_and_streets(cfg):
    names = [a.name for a in cfg.areas if a.tier is Tier.TOWNSHIP]
    assert len(TOWNSHIPS) == 29
    assert sorted(names) == sorted(TOWNSHIPS)
    assert all(a.parent == "zhongxian" for a in cfg.areas if a.tier is Tier.TOWNSHIP)
    assert cfg.lineage("zhongxian")[-1].tier is Tier.CITY


def test_every_township_has_villages_and_every_village_has_groups(cfg):
    for t in (a for a in cfg.areas if a.tier is Tier.TOWNSHIP):
        villages = cfg.children(t.id)
        assert len(villages) >= 4, t.name
        for v in villages:
            assert v.tier is Tier.VILLAGE
            assert cfg.children(v.id) and all(g.tier is Tier.GROUP for g in cfg.children(v.id))


def test_the_sensor_network_is_at_the_plans_scale(cfg):
    kinds = Counter(s.kind.value for s in cfg.sites)
    assert kinds["reservoir"] == 102  # the plan's 102 small and medium reservoirs
    assert 80 <= kinds["rain"] <= 150  # rain gauges across the county
    assert 200 <= kinds["landslide"] <= 886  # a representative subset of the 886 hazard points
    cameras = [d for g in cfg.gateways for d in g.devices if d.type == "mqtt"]
    assert len(cameras) == 72  # the plan's 72 fire-monitoring systems
    assert {cfg.site(c.site).kind.value for c in cameras} == {"forest"}
    rain_townships = {cfg.lineage(s.area)[-3].id for s in cfg.sites if s.kind.value == "rain"}
    assert len(rain_townships) == 29


def test_every_device_answers_on_a_unique_slave_of_its_gateways_endpoint(cfg):
    for gw in cfg.gateways:
        slaves = [(d.port, d.slave) for d in gw.devices if d.type == "modbus_tcp"]
        assert len(slaves) == len(set(slaves)) and all(1 <= s <= 247 for _, s in slaves), gw.id
        assert len({p for p, _ in slaves}) == 1, f"{gw.id}: one DTU endpoint per gateway"


def test_every_counter_gauge_wraps_where_its_register_does_and_the_rules_know_it(cfg):
    from rules.config import Resolver
    res = Resolver(cfg.rules, {s.id: s for s in cfg.sites})
    bits = {"uint16": 16, "uint32": 32}
    counters = [(d, r) for g in cfg.gateways for d in g.devices if d.type == "modbus_tcp"
                for r in d.registers if r.quantity == "rain_count_mm"]
    assert len(counters) == sum(1 for s in cfg.sites if s.kind.value == "rain")
    for d, r in counters:
        assert res.get("rain", d.site).counter_max_mm == 2 ** bits[r.type] * r.scale, d.id
        assert cfg.site(d.site).thresholds.rain.counter_max_mm == 32768.0  # 0.5 mm tips, not the 0.1 mm default


def test_every_reservoir_excludes_what_its_gauge_cannot_read(cfg):
    from rules.config import Resolver
    res = Resolver(cfg.rules, {s.id: s for s in cfg.sites})
    gauges = [(d, r) for g in cfg.gateways for d in g.devices if d.type == "modbus_tcp"
              for r in d.registers if r.quantity == "level_m"]
    assert len(gauges) == 102
    for d, r in gauges:
        bounds = res.get("plausible", d.site).level_m
        assert (bounds.min, bounds.max) == (r.min, r.max), d.id
        crest = res.get("reservoir", d.site).crest_m
        assert bounds.min < res.get("reservoir", d.site).flood_limit_m and bounds.max > crest


def test_every_phone_number_is_fictitious_in_the_reserved_test_block(cfg):
    phones = [p.phone for a in cfg.areas for p in a.people] + [p.phone for s in cfg.sites for p in s.people]
    with open(ZX / "households.csv", encoding="utf-8") as f:
        households = list(csv.DictReader(f))
    phones += [h["phone"] for h in households]
    assert all(int(p.lstrip("+")) in RESERVED for p in phones)
    assert len(phones) == len(set(phones)), "one person, one number"
    groups = {a.id for a in cfg.areas if a.tier is Tier.GROUP}
    assert {h["group"] for h in households} <= groups


def test_the_generated_files_are_what_the_generator_makes():
    run = subprocess.run([sys.executable, str(ZX / "generate.py"), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("path", sorted((ZX / "scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_validates_against_the_deployment(cfg, path):
    scn = load_scenario(path)
    assert check_against(scn, cfg) == []


def test_the_demo_is_what_yujing_run_plays(cfg):
    assert cfg.simulation is not None and cfg.simulation.scenario
    scn = load_scenario(cfg.path(cfg.simulation.scenario, ""))
    assert scn.duration / cfg.simulation.speed < 60, "the demo fits in a minute"
    assert cfg.mqtt.embedded and cfg.collector.store.type == "sqlite"
