"""Alerts benchmark: how fast a township-wide red reaches every household, and how soon the first SMS leaves.

    python bench/alerts.py [--households 5000] [--sms-rate 1000] [--concurrency 64] [--trials 40]

Starts a private Mosquitto, the Twilio stand-in and the alerts service (in this process, the real
twilio client over loopback HTTP), with the example chain of ``alerts/example`` and ``--households``
households under its village. Measures:

- fan-out: a red landslide warning to every household: notifications per second issued to the stand-in
  (first to last create request) and the time until the last one;
- latency: for ``--trials`` fresh warnings (blue, one site, three recipients), the time from the
  triggering reading (the warning's ``updated_at``, stamped when it is published) to the first SMS
  request at the stand-in, p50/p99. The rules stage (reading → warning) is measured by its own bench.

The per-channel rate limit is the provider's: ``--sms-rate`` per second (Twilio's default for a long
code is far lower; a short code or a messaging service allows more). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from servers import Mosquitto  # noqa: E402

from alerts.harness import running_alerts  # noqa: E402
from yujing.model import Hazard, HazardWarning, Level, WarningState, utcnow  # noqa: E402


def households_csv(path: Path, n: int, voice_share: float) -> None:
    rows = ["group,id,name,phone,channels"]
    every = int(1 / voice_share) if voice_share > 0 else 0
    for i in range(n):
        group = "shibao.gonghe.g1" if i % 2 else "shibao.gonghe.g2"
        channels = "sms voice" if every and i % every == 0 else "sms"
        rows.append(f"{group},h{i},住户{i}户,+86137{i:08d},{channels}")
    path.write_text("\n".join(rows) + "\n")


def warning(level: Level, key: str, site: str = "LS-GONGHE-01") -> HazardWarning:
    now = utcnow()
    return HazardWarning(key=key, version=1, hazard=Hazard.LANDSLIDE, level=level, state=WarningState.ISSUED,
                         site=site, area="shibao.gonghe.g1", title="位移速率超阈值", evidence=["裂缝计1 位移 12.5 mm"],
                         issued_at=now - timedelta(seconds=1), updated_at=now)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


async def main(args: argparse.Namespace) -> dict:
    broker = Mosquitto().start()
    out: dict = {"households": args.households, "sms_rate_limit_per_s": args.sms_rate,
                 "concurrency": args.concurrency}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            alerts = {"grouping": {"wait_s": 0},
                      "rates": {"sms": {"per_s": args.sms_rate, "burst": args.concurrency,
                                        "concurrency": args.concurrency},
                                "voice": {"per_s": args.voice_rate, "burst": 8, "concurrency": 16}}}
            households_csv(d / "households-bench.csv", args.households, args.voice_share)
            alerts["households"] = str(d / "households-bench.csv")
            async with running_alerts(d / "run", mqtt_port=broker.port, prefix="bench", alerts=alerts) as rig:
                tw = rig.twilio
                tw.verbose = False
                # latency: small warnings one at a time
                lat: list[float] = []
                for i in range(args.trials):
                    n0 = len(tw.messages)
                    w = warning(Level.BLUE, f"bench:lat:{i}")
                    await rig.publish(w)
                    await tw.wait_until(lambda: len(tw.messages) > n0, 10, "first SMS")
                    first = tw.messages[n0]
                    lat.append((first.created - w.updated_at.timestamp()) * 1000)
                    await rig.settled(30)
                    # lift it, so the next trial is a new group (the same level again would be inhibited)
                    await rig.publish(w.model_copy(update={"version": 2, "state": WarningState.LIFTED}))
                    await tw.wait_until(lambda: any("解除" in m.body and w.key for m in tw.messages[n0 + 1:]), 10)
                    await rig.settled(30)
                out["trigger_to_first_sms_ms"] = {"p50": round(statistics.median(lat), 2),
                                                  "p99": round(pct(lat, 0.99), 2), "max": round(max(lat), 2),
                                                  "trials": len(lat)}
                # fan-out: one red to every household
                n0, c0 = len(tw.messages), len(tw.calls)
                red = warning(Level.RED, "bench:red")
                t0 = time.time()
                await rig.publish(red)
                await rig.settled(600)
                sms = tw.messages[n0:]
                calls = tw.calls[c0:]
                stamps = sorted(r.created for r in sms + calls)
                span = stamps[-1] - stamps[0]
                out["red_fanout"] = {
                    "sms": len(sms), "calls": len(calls), "notifications": len(sms) + len(calls),
                    "first_request_after_publish_ms": round((stamps[0] - t0) * 1000, 1),
                    "last_request_after_publish_s": round(stamps[-1] - t0, 3),
                    "notifications_per_s": round((len(stamps) - 1) / span, 1) if span > 0 else None,
                    "sms_per_s": round((len(sms) - 1) / (max(r.created for r in sms) - min(r.created for r in sms)), 1),
                }
    finally:
        broker.cleanup()
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--households", type=int, default=5000)
    p.add_argument("--sms-rate", type=float, default=1000.0, help="provider SMS requests per second allowed")
    p.add_argument("--voice-rate", type=float, default=100.0)
    p.add_argument("--voice-share", type=float, default=0.0, help="share of households that also get a call")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--trials", type=int, default=40)
    print(json.dumps(asyncio.run(main(p.parse_args())), ensure_ascii=False, indent=2))
