"""bench/phone.py measures what issue 18 asks: the background goes through the collector (every reading published
is stored), and each trial's time is split at every hop from the reading's publish to the SMS at the stand-in.

The bench's background once named sites of other gateways; since a gateway may speak only for its own devices,
the collector and the rules refused 19 of every 20 of its readings, and nothing said so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT


def test_the_phone_bench_stores_its_background_and_splits_every_trial_by_hop():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "phone.py"), "--mode", "parts", "--trials", "3",
                          "--rate", "200", "--store", "sqlite"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)["separate_processes"]
    assert out["trials"] == 3 and out["trials_split"] == 3
    assert out["background_readings_sent"] > 0
    assert out["readings_stored_by_collector"] == out["readings_published"]
    hops = out["hops_ms"]
    assert list(hops) == ["publish_to_warning_on_broker", "warning_on_broker_to_alerts_received",
                          "alerts_received_to_claimed", "claimed_to_sms_at_standin"]
    # the hops are differences of stamps along one path: together they are the whole way (medians need not add)
    assert all(set(h) == {"p50", "p99"} for h in hops.values())
    assert 0 < out["reading_to_first_sms_ms"]["min"] <= out["reading_to_first_sms_ms"]["p50"]
