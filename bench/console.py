"""Benchmark: the console's page load and live-update delay, for the example's sites and for ten times more.

    python3 bench/console.py                 # the example (543 sites) and a generated ×11 (5,973 sites)
    python3 bench/console.py --scale 1 --loads 5 --warnings 50

For each size it runs ``yujing console`` (the duty office's application with the console: the read model,
the pages, the event stream; logged in as the example's demo account)
against a real Mosquitto, opens the map in headless Chromium and measures:

- ``load_ms``: navigation start → every site drawn on the map (median and max of ``--loads`` loads), and
  the size of the state the page starts from (``state_kb``);
- ``live_ms``: a warning published on MQTT (as rules publishes them) → its card on the open map and its
  site's colour changed; one warning at a time (p50, p95, max) and a burst of ``--burst`` at once (the last).

Prints one JSON object. Needs Mosquitto, chromium and chromium-driver (tests/install-servers.sh).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import paho.mqtt.client as paho  # noqa: E402
import yaml  # noqa: E402
from testing.console import chromium, log_in, relocated_example, wait_js, yujing_run  # noqa: E402
from servers import Mosquitto  # noqa: E402

from yujing import topics  # noqa: E402
from yujing.model import Hazard, HazardWarning, Level, WarningState  # noqa: E402


def scaled_config(dst: Path, mqtt_port: int, prefix: str, scale: int) -> tuple[Path, list[str]]:
    """The example, as the console alone sees it (Mosquitto, no simulation), with its sites ×``scale``.

    Copies keep the area and kind of their original and sit a few km away; they have no devices (the
    map's cost is the sites, not what reads them)."""
    cfg_dir = relocated_example(dst)
    dep_path = cfg_dir / "deployment.yaml"
    dep = yaml.safe_load(dep_path.read_text(encoding="utf-8"))
    dep["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port, "topic_prefix": prefix}
    dep.pop("simulation", None)
    dep_path.write_text(yaml.safe_dump(dep, allow_unicode=True, sort_keys=False), encoding="utf-8")
    sites_path = cfg_dir / "sites.yaml"
    doc = yaml.safe_load(sites_path.read_text(encoding="utf-8"))
    rnd = random.Random(14)
    base = doc["sites"]
    out = list(base)
    for k in range(1, scale):
        for s in base:
            c = {key: v for key, v in s.items() if key not in ("people", "thresholds")}
            c["id"] = f"{s['id']}-X{k}"
            c["lat"] = round(s["lat"] + rnd.uniform(-0.04, 0.04), 4)
            c["lon"] = round(s["lon"] + rnd.uniform(-0.04, 0.04), 4)
            out.append(c)
    doc["sites"] = out
    sites_path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return cfg_dir, [s["id"] for s in out]


def warning(site: str, n: int, level: Level = Level.BLUE) -> HazardWarning:
    now = datetime.now(timezone.utc)
    return HazardWarning(key=f"rainstorm:{site}", version=1, hazard=Hazard.RAINSTORM, level=level,
                         state=WarningState.ISSUED, site=site, area="", rule="bench", title=f"bench {n}",
                         evidence=["12小时累计雨量 50.5 mm ≥ 蓝色阈值 50.0 mm"], issued_at=now, updated_at=now)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))], 1)


WATCH = """
window.__seen = {};
new MutationObserver(() => {
  for (const el of document.querySelectorAll('#warnlist .wcard')) {
    const k = el.dataset.key; if (!(k in window.__seen)) window.__seen[k] = Date.now();
  }
}).observe(document.getElementById('warnlist'), {childList: true, subtree: true});
"""


def measure(scale: int, loads: int, singles: int, burst: int, mosquitto: Mosquitto) -> dict:
    prefix = f"bench-console-{scale}-{random.randrange(1 << 30):x}"
    with tempfile.TemporaryDirectory(prefix="yujing-bench-console-") as tmp:
        cfg_dir, site_ids = scaled_config(Path(tmp) / "cfg", mosquitto.port, prefix, scale)
        mq = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=prefix + "-pub")
        mq.connect("127.0.0.1", mosquitto.port)
        mq.loop_start()
        with yujing_run(cfg_dir, duration_s=1800, args=("console",)) as run, chromium() as browser:
            url = run.console
            log_in(browser, url, "demo", "yujing-demo")  # the example's demo account (duty:, login_hint)
            load_ms = []
            for _ in range(loads):
                browser.get("about:blank")
                browser.get(url)
                wait_js(browser, f"return window.yujingMap && window.yujingMap.markers.size == {len(site_ids)}"
                                 " && window.yujingMap.visibleCount() == window.yujingMap.markers.size", 120, "every site")
                load_ms.append(browser.execute_script("return performance.now()"))
            state_kb = browser.execute_async_script(
                "fetch('/console/state.json').then(r => r.text()).then(t => arguments[0](new Blob([t]).size / 1024))")
            wait_js(browser, "return document.getElementById('conn').classList.contains('up')", 30, "the event stream")
            browser.execute_script(WATCH)
            rnd = random.Random(1)
            picked = rnd.sample(site_ids, singles + burst)
            live_ms, colour_ms = [], []
            for n, site in enumerate(picked[:singles]):
                w = warning(site, n)
                t0 = time.time() * 1000
                mq.publish(topics.warning(prefix, w.hazard.value, w.site, w.key), w.model_dump_json(), qos=1).wait_for_publish()
                wait_js(browser, f"return window.__seen['{w.key}'] && Y.states['{site}'] && Y.states['{site}'].level", 30,
                        "the card and the colour")
                live_ms.append(browser.execute_script(f"return window.__seen['{w.key}']") - t0)
                colour_ms.append(time.time() * 1000 - t0)  # upper bound: includes this poll's round trip
            t0 = time.time() * 1000
            for n, site in enumerate(picked[singles:]):
                w = warning(site, singles + n)
                mq.publish(topics.warning(prefix, w.hazard.value, w.site, w.key), w.model_dump_json(), qos=1)
            last = f"rainstorm:{picked[-1]}"
            wait_js(browser, f"return Object.keys(window.__seen).length >= {singles + burst} && window.__seen['{last}']",
                    120, "every card of the burst")
            burst_ms = max(browser.execute_script("return Object.values(window.__seen)")) - t0
        mq.loop_stop()
        mq.disconnect()
    return {"sites": len(site_ids), "load_ms": {"median": round(statistics.median(load_ms)), "max": round(max(load_ms)),
                                                "loads": loads}, "state_kb": round(state_kb, 1),
            "live_ms": {"p50": pct(live_ms, 50), "p95": pct(live_ms, 95), "max": round(max(live_ms), 1),
                        "warnings": singles},
            "burst": {"warnings": burst, "last_card_ms": round(burst_ms), "cards_in_force": singles + burst}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, action="append", help="sites × this (repeatable; default 1 and 11)")
    p.add_argument("--loads", type=int, default=3)
    p.add_argument("--warnings", type=int, default=30, help="warnings published one at a time")
    p.add_argument("--burst", type=int, default=100, help="warnings published at once")
    args = p.parse_args()
    mosquitto = Mosquitto().start()
    try:
        runs = [measure(s, args.loads, args.warnings, args.burst, mosquitto) for s in (args.scale or [1, 11])]
    finally:
        mosquitto.cleanup()
    print(json.dumps({"bench": "console", "runs": runs}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
