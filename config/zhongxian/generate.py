"""Generate the large files of the Zhong County example deployment, deterministically.

    python3 config/zhongxian/generate.py              # areas.yaml, households.csv, sites.yaml, gateways.yaml
    python3 config/zhongxian/generate.py --landslides 886   # the plan's full count of hazard points

Same seed, same files: the generated files are committed, and a test checks they are up to date.
Hand-written files (deployment.yaml, scenarios/) are never touched.

Phone numbers: every number is in +86 139 0000 0000 .. +86 139 0000 9999, a block this example
treats as reserved for tests (fictitious people; never dial them from a real account).
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from names import (COMMUNITIES, FOREST_TOWNSHIPS, FOREST_WORDS, GIVEN, RESERVOIR_WORDS, SURNAMES,  # noqa: E402
                   TERRAIN, TOWNSHIPS, VILLAGES)

SEED = 20210701  # the plan's first year
RESERVOIRS = 102  # the plan: 102 small and medium reservoirs
FIRE_CAMERAS = 72  # the plan: 72 intelligent fire-monitoring systems, two per forest block here
LANDSLIDE_MIX = (680, 57, 149)  # landslides, rockfall/unstable rock, unstable slopes (886 in all)
PHONE_BASE = 8613900000000
PHONE_LIMIT = 10_000
MODBUS_PORT_BASE = 15100  # gateway i serves its devices (a Modbus TCP DTU) on 15100 + i
TIP_MM = 0.5  # the example's tipping buckets
COUNTER_MAX_MM = 65536 * TIP_MM  # their 16-bit counters wrap here
# Division codes (GB/T 2260; townships and villages in the 9/12-digit extensions of the statistical codes):
# Chongqing 500000 and Zhong County 500233 are the real ones; township and village codes are numbered here in
# the order of names.py (illustrative, not the official 统计用区划代码), so a CAP <geocode> can address them.
CITY_CODE, COUNTY_CODE = "500000", "500233"
POLL_S = {"rain": 600.0, "reservoir": 1800.0, "landslide": 3600.0}  # scenario seconds (SL651-style 10 min, 30 min, hourly)


class Phones:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        if self.n >= PHONE_LIMIT:
            raise SystemExit("generate.py: more people than the reserved block +86 139 0000 xxxx holds")
        self.n += 1
        return f"+{PHONE_BASE + self.n}"


class Gen:
    def __init__(self, landslides: int) -> None:
        self.rnd = random.Random(SEED)
        self.phones = Phones()
        self.landslides = landslides
        self.areas: list[dict[str, Any]] = []
        self.households: list[dict[str, str]] = []
        self.sites: list[dict[str, Any]] = []
        self.villages: dict[str, list[dict[str, Any]]] = {}  # township id -> village areas
        self.groups: dict[str, list[str]] = {}  # village id -> group ids
        self.devices: dict[str, list[dict[str, Any]]] = {t[0]: [] for t in TOWNSHIPS}

    # --- people ------------------------------------------------------------------------------------

    def name(self) -> str:
        return self.rnd.choice(SURNAMES) + self.rnd.choice(GIVEN)

    def person(self, role: str, name: str | None = None, voice: bool = True) -> dict[str, Any]:
        phone = self.phones.next()
        return {"id": f"p{phone[-4:]}", "name": name or self.name(), "role": role, "phone": phone,
                "channels": ["sms", "voice"] if voice else ["sms"]}

    # --- the administrative tree -------------------------------------------------------------------

    def stream(self, name: str) -> None:
        """Each section draws from its own seeded stream, so changing one leaves the others as they were."""
        self.rnd = random.Random(f"{SEED}-{name}")

    def tree(self) -> None:
        self.stream("tree")
        self.areas.append({"id": "chongqing", "name": "重庆市", "tier": "city", "code": CITY_CODE,
                           "people": [self.person("duty", "市应急管理局值班室")]})
        self.areas.append({"id": "zhongxian", "name": "忠县", "tier": "county", "parent": "chongqing",
                           "code": COUNTY_CODE, "people": [self.person("duty", "县应急管理局值班室"),
                                      self.person("responsible", "县防汛抗旱指挥部办公室"),
                                      self.person("deputy", "县应急管理局副局长(值班领导)")]})
        for t, (tid, tname, lat, lon, kind) in enumerate(TOWNSHIPS):
            office = "应急办" if kind == "street" else "应急办"
            self.areas.append({"id": tid, "name": tname, "tier": "township", "parent": "zhongxian",
                               "code": f"{COUNTY_CODE}{t + 1:03d}", "lat": lat, "lon": lon, "people": [self.person("duty", f"{tname}{office}值班室"),
                                          self.person("responsible"), self.person("deputy")]})
            self.villages[tid] = []
            n = {"street": 5, "town": self.rnd.randint(6, 9), "xiang": self.rnd.randint(4, 6)}[kind]
            pool = list(VILLAGES)
            self.rnd.shuffle(pool)
            if kind == "street":
                comm = list(COMMUNITIES)
                self.rnd.shuffle(comm)
                pool = comm[:3] + pool
            for v, (vid, vname) in enumerate(pool[:n]):
                self.village(tid, f"{tid}.{vid}", vname, f"{COUNTY_CODE}{t + 1:03d}{v + 1:03d}")

    def village(self, tid: str, vid: str, vname: str, code: str) -> None:
        # a village's centre from a stream of its own: drawing from the tree's would move every later name
        lat, lon = self.place(tid, rnd=random.Random(f"{SEED}-village-{vid}"))
        area = {"id": vid, "name": vname, "tier": "village", "parent": tid, "code": code, "lat": lat, "lon": lon,
                "people": [self.person("responsible"), self.person("deputy"), self.person("grid", voice=False)]}
        self.areas.append(area)
        self.villages[tid].append(area)
        self.groups[vid] = []
        for g in range(1, self.rnd.randint(3, 6) + 1):
            gid = f"{vid}.g{g}"
            self.areas.append({"id": gid, "name": f"{vname}{g}组", "tier": "group", "parent": vid,
                               "people": [self.person("group_leader")]})
            self.groups[vid].append(gid)
            for h in range(1, self.rnd.randint(4, 7) + 1):
                self.households.append({"group": gid, "id": f"{gid}.h{h}", "name": self.name() + "户",
                                        "phone": self.phones.next()})

    def maintainers(self) -> None:
        """The county's equipment maintainers (设备运维): silent gauges, broken links and data loss go to them.
        Numbered after everyone else, so adding them left every other number as it was."""
        county = next(a for a in self.areas if a["id"] == "zhongxian")
        county["people"].append(self.person("maintainer", "县监测预警平台运维值班", voice=False))

    # --- sites and their devices ---------------------------------------------------------------------

    def place(self, tid: str, spread: float = 0.04, rnd: random.Random | None = None) -> tuple[float, float]:
        _, _, lat, lon, _ = next(t for t in TOWNSHIPS if t[0] == tid)
        rnd = rnd or self.rnd
        return (round(lat + rnd.uniform(-spread, spread), 4), round(lon + rnd.uniform(-spread, spread), 4))

    def a_group(self, tid: str) -> tuple[dict[str, Any], str]:
        village = self.rnd.choice(self.villages[tid])
        return village, self.rnd.choice(self.groups[village["id"]])

    def site(self, sid: str, name: str, kind: str, tid: str, area: str, thresholds: dict | None = None,
             spread: float = 0.04) -> dict[str, Any]:
        lat, lon = self.place(tid, spread)
        site = {"id": sid, "name": name, "kind": kind, "area": area, "lat": lat, "lon": lon,
                "people": [self.person("monitor"), self.person("responsible")]}
        if thresholds:
            site["thresholds"] = thresholds
        self.sites.append(site)
        return site

    def modbus(self, tid: str, dev_id: str, site: str, kind: str, register: dict[str, Any]) -> None:
        self.devices[tid].append({"id": dev_id, "type": "modbus_tcp", "site": site, "host": "127.0.0.1",
                                  "port": MODBUS_PORT_BASE + [t[0] for t in TOWNSHIPS].index(tid),
                                  "slave": len(self.devices[tid]) + 1, "interval_s": POLL_S[kind],
                                  "registers": [register]})

    def rain_gauges(self) -> None:
        self.stream("rain_gauges")
        for tid, tname, _lat, _lon, kind in TOWNSHIPS:
            n = {"street": 2, "town": self.rnd.randint(3, 5), "xiang": 3}[kind]
            for i in range(1, n + 1):
                village, _g = self.a_group(tid)
                sid = f"RG-{tid.upper()}-{i:02d}"
                # the register counts 0.5 mm tips in 16 bits: it wraps at 65536 × 0.5 mm, not the 0.1 mm default
                th: dict[str, Any] = {"rain": {"counter_max_mm": COUNTER_MAX_MM}}
                if kind != "street" and self.rnd.random() < 0.4:  # a mountain-torrent village (山洪危险区)
                    p1, p3 = self.rnd.choice((25, 30, 35)), self.rnd.choice((45, 50, 60))
                    th["torrent"] = {"prepare": {1: p1, 3: p3}, "evacuate": {1: p1 + 15, 3: p3 + 25}}
                self.site(sid, f"{village['name']}雨量站", "rain", tid, village["id"], thresholds=th, spread=0.05)
                self.modbus(tid, sid.lower(), sid, "rain", {
                    "quantity": "rain_count_mm", "unit": "mm", "table": "input", "address": 0, "type": "uint16",
                    "scale": TIP_MM})  # 0.5 mm per tip; the 16-bit counter rolls over

    def reservoirs(self) -> None:
        self.stream("reservoirs")
        words = list(RESERVOIR_WORDS)
        self.rnd.shuffle(words)
        rural = [t[0] for t in TOWNSHIPS if t[4] != "street"]
        counts = {tid: 0 for tid in rural}
        for i in range(RESERVOIRS):
            tid = rural[i % len(rural)] if i < 2 * len(rural) else self.rnd.choice(rural)
            counts[tid] += 1
            village, _g = self.a_group(tid)
            word = words[i % len(words)] + ("" if i < len(words) else "二")
            medium = i < 3  # a few medium reservoirs; the rest small (小一/小二型)
            sid = f"SK-{tid.upper()}-{counts[tid]:02d}"
            crest = round(self.rnd.uniform(220, 620), 1)
            height = self.rnd.uniform(18, 32) if medium else self.rnd.uniform(8, 18)
            levels = {  # metres above datum; crest minus margins in the proportions of a small earth dam
                "flood_limit_m": round(crest - 0.22 * height, 2),
                "flood_control_high_m": round(crest - 0.15 * height, 2),
                "design_flood_m": round(crest - 0.10 * height, 2),
                "check_flood_m": round(crest - 0.06 * height, 2),
                "crest_m": crest,
            }
            # small reservoirs fill fast: a 0.3 m/h default rate-of-rise would call every shower orange
            levels["rise_rate_m_per_h"] = 0.6 if medium else 1.0
            # what the gauge can read: from below the dam's foot to above its crest. The edge flags readings
            # outside it and the rules exclude them as well, should a gateway's register range be missing
            span = {"min": round(crest - height - 5, 1), "max": round(crest + 3, 1)}
            self.site(sid, f"{word}水库" + ("(中型)" if medium else ""), "reservoir", tid, village["id"],
                      thresholds={"reservoir": levels, "plausible": {"level_m": span}})
            self.modbus(tid, sid.lower(), sid, "reservoir", {
                "quantity": "level_m", "unit": "m", "table": "input", "address": 0, "type": "float32", **span})

    def landslide_points(self) -> None:
        self.stream("landslide_points")
        kinds = [("滑坡", "HP"), ("危岩", "WY"), ("不稳定斜坡", "XP")]
        total = sum(LANDSLIDE_MIX)
        quota = [round(self.landslides * k / total) for k in LANDSLIDE_MIX]
        quota[0] += self.landslides - sum(quota)
        rural = [t[0] for t in TOWNSHIPS]
        counter: dict[str, int] = {}
        for (suffix, code), n in zip(kinds, quota):
            for _ in range(n):
                tid = self.rnd.choice(rural)
                counter[tid] = counter.get(tid, 0) + 1
                village, group = self.a_group(tid)
                place = self.rnd.choice(SURNAMES) + "家" + self.rnd.choice(TERRAIN)
                sid = f"{code}-{tid.upper()}-{counter[tid]:03d}"
                # v of the uniform-velocity stage, from the point's calm-period record (mm/day)
                ref = round(self.rnd.choice((0.5, 1.0, 2.0, 3.0, 5.0)) * self.rnd.uniform(0.8, 1.2), 2)
                self.site(sid, f"{village['name']}{place}{suffix}", "landslide", tid, group,
                          thresholds={"landslide": {"reference_mm_per_day": ref}})
                self.modbus(tid, sid.lower(), sid, "landslide", {  # a calm slope stands still: no stuck check
                    "quantity": "displacement_mm", "unit": "mm", "table": "input", "address": 0,
                    "type": "float32", "min": -50, "max": 5000})

    def forest(self) -> None:
        self.stream("forest")
        blocks = FIRE_CAMERAS // 2
        words = list(FOREST_WORDS)
        for i in range(blocks):
            tid = FOREST_TOWNSHIPS[i % len(FOREST_TOWNSHIPS)]
            village, _g = self.a_group(tid)
            word = words[i % len(words)] + ("" if i < len(words) else "二")
            sid = f"LQ-{tid.upper()}-{i // len(FOREST_TOWNSHIPS) + 1:02d}"
            site = self.site(sid, f"{word}林区", "forest", tid, village["id"], spread=0.06)
            for cam in ("a", "b"):
                dev = f"fc-{tid}-{i // len(FOREST_TOWNSHIPS) + 1:02d}{cam}"
                self.devices[tid].append({
                    "id": dev, "type": "mqtt", "site": site["id"], "topic": f"cameras/{dev}/detections",
                    "interval_s": 300.0, "ts": "ts",
                    "fields": [  # one JSON message per detection: {"type": "smoke", "confidence": 0.8, ...}
                        {"quantity": "smoke_confidence", "value": "confidence", "match": {"type": "smoke"},
                         "min": 0, "max": 1, "meta": {"bearing_deg": "bearing_deg", "snapshot": "snapshot"}},
                        {"quantity": "flame_confidence", "value": "confidence", "match": {"type": "flame"},
                         "min": 0, "max": 1, "meta": {"bearing_deg": "bearing_deg", "snapshot": "snapshot"}},
                    ],
                })

    # --- output -------------------------------------------------------------------------------------

    def gateways(self) -> list[dict[str, Any]]:
        out = []
        for tid, tname, *_ in TOWNSHIPS:
            out.append({"id": f"gw-{tid}", "name": f"{tname}监测网关", "heartbeat_s": 300.0,
                        "devices": self.devices[tid]})
        return out


def dump(doc: dict[str, Any], header: str) -> str:
    class Flow(yaml.SafeDumper):
        pass

    def repr_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
        flow = all(not isinstance(v, (dict, list)) for v in data.values()) and len(data) <= 8
        return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flow)

    def repr_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
        flow = all(isinstance(v, str) for v in data)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    Flow.add_representer(dict, repr_dict)
    Flow.add_representer(list, repr_list)
    body = yaml.dump(doc, Dumper=Flow, allow_unicode=True, sort_keys=False, width=120)
    return header + body


HEADER = ("# GENERATED by config/zhongxian/generate.py (seed {seed}) — edit the generator, not this file.\n"
          "# Fictitious people; phone numbers in +86 139 0000 0000..9999, a block reserved here for tests.\n")


def build(landslides: int) -> dict[str, str]:
    g = Gen(landslides)
    g.tree()
    g.rain_gauges()
    g.reservoirs()
    g.landslide_points()
    g.forest()
    g.maintainers()
    head = HEADER.format(seed=SEED)
    sites = g.sites
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["group", "id", "name", "phone"], lineterminator="\n")
    w.writeheader()
    w.writerows(g.households)
    return {
        "areas.yaml": dump({"areas": g.areas}, head + "# The six-level chain 市 → 县 → 乡镇(街道) → 村(居委) → 组; "
                           "households (户) are in households.csv.\n"),
        "households.csv": buf.getvalue(),
        "sites.yaml": dump({"sites": sites}, head + "# Rain stations, reservoirs, geological hazard points, "
                           "forest blocks.\n"),
        "gateways.yaml": dump({"gateways": g.gateways()}, head + "# One gateway per township; its devices "
                              "answer on one Modbus TCP endpoint (a DTU), slave ids 1..n; cameras publish MQTT.\n"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--landslides", type=int, default=300, help="hazard points to generate (the plan counts 886)")
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--check", action="store_true", help="exit 1 if the files on disk differ from what would be made")
    args = p.parse_args(argv)
    files = build(args.landslides)
    stale = [n for n, text in files.items() if not (args.out / n).exists() or (args.out / n).read_text("utf-8") != text]
    if args.check:
        for n in stale:
            print(f"{args.out / n}: out of date; run config/zhongxian/generate.py", file=sys.stderr)
        return 1 if stale else 0
    for n, text in files.items():
        (args.out / n).write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
