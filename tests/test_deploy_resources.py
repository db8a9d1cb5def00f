"""Resource bounds of the edge agent as deployed: memory stays flat and log volume stays bounded over a long
run at accelerated time, through a broker outage (the backlog grows on disk, not in memory).

The CI case runs ~25 s of real time (about 40 scenario minutes). The soak is the same test, longer:

    YUJING_SOAK_S=1800 python3 -m pytest -m soak tests/test_deploy_resources.py     # 30 real minutes
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from servers import Mosquitto, free_port

MB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for pid {pid}")


def write_config(directory: Path, mqtt_port: int, devices: int, speed: float) -> None:
    """A gateway of ``devices`` Modbus rain gauges polled every 10 scenario-seconds, devices simulated."""
    base = free_port(devices)
    gauges = [{"id": f"rg-{i:03d}", "type": "modbus_tcp", "site": f"RG-{i:03d}", "host": "127.0.0.1",
               "port": base + i, "slave": 1, "interval_s": 10, "timeout_s": 2, "retries": 0,
               "registers": [{"quantity": "rain_count_mm", "unit": "mm", "table": "input", "address": 0,
                              "type": "uint16", "scale": 0.5}]} for i in range(devices)]
    doc = {
        "deployment": {"name": "soak", "data_dir": str(directory / "var")},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "topic_prefix": "soak"},
        "areas": [{"id": "county", "name": "县", "tier": "county"}],
        "sites": [{"id": g["site"], "name": g["site"], "kind": "rain", "area": "county"} for g in gauges],
        "gateways": [{"id": "gw-soak", "heartbeat_s": 60, "devices": gauges,
                      "uplink": {"reconnect_s": 1, "reconnect_max_s": 60}}],
        "simulation": {"devices": True, "twilio": False, "speed": speed},
    }
    (directory / "deployment.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


@dataclass
class Run:
    rss: list[tuple[float, int]] = field(default_factory=list)  # (real seconds since start, bytes)
    log_bytes: int = 0
    log_lines: int = 0
    outbox_bytes: int = 0

    def max_rss(self, start_s: float, end_s: float) -> int:
        return max(b for t, b in self.rss if start_s <= t <= end_s)


def run_edge(tmp: Path, total_s: float, outage_from_s: float, speed: float, devices: int) -> Run:
    """``yujing edge`` (simulated devices) against a private Mosquitto that goes away at ``outage_from_s``."""
    broker = Mosquitto(workdir=tmp / "broker")
    (tmp / "broker").mkdir()
    broker.start()
    conf = tmp / "conf"
    conf.mkdir()
    write_config(conf, broker.port, devices, speed)
    err = open(tmp / "edge.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "yujing", "edge", str(conf), "--duration", str(total_s)],
                            stdout=subprocess.DEVNULL, stderr=err, cwd=tmp,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    run = Run()
    t0 = time.monotonic()
    try:
        while proc.poll() is None:
            t = time.monotonic() - t0
            if t >= outage_from_s and broker.running:
                broker.stop(kill=True)
            try:
                run.rss.append((t, rss_bytes(proc.pid)))
            except (OSError, LookupError):
                break
            time.sleep(0.25)
        proc.wait(timeout=total_s + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()
        broker.cleanup()
    text = (tmp / "edge.log").read_bytes()
    run.log_bytes, run.log_lines = len(text), text.count(b"\n")
    run.outbox_bytes = sum(p.stat().st_size for p in (conf / "var").glob("edge-gw-soak.outbox*"))
    assert proc.returncode == 0, text.decode(errors="replace")[-3000:]
    return run


def check_bounds(run: Run, total_s: float, speed: float) -> None:
    warm = run.max_rss(2.0, 0.25 * total_s)
    late = run.max_rss(0.75 * total_s, total_s)
    growth = late - warm
    # Flat: what the agent holds is bounded by its config (devices, batch, inflight), not by time or backlog.
    assert growth < max(8 * MB, 0.10 * warm), f"RSS grew {growth / MB:.1f} MB ({warm / MB:.1f} -> {late / MB:.1f})"
    assert late < 150 * MB, f"RSS {late / MB:.1f} MB: over the edge unit's MemoryHigh budget"
    # Bounded logs: startup lines, then at most a line per reconnect attempt (backoff capped at 60 scenario-s)
    # and per state change, never per reading.
    scenario_hours = total_s * speed / 3600
    assert run.log_lines < 60 + 120 * scenario_hours, f"{run.log_lines} log lines in {scenario_hours:.1f} h"
    assert run.log_bytes < 400 * run.log_lines + 4096
    assert run.outbox_bytes > 0  # the outage backlog went to disk


def test_edge_memory_stays_flat_and_logs_stay_bounded_through_a_broker_outage(tmp_path):
    total_s, speed = 24.0, 100.0  # 40 scenario minutes; 20 gauges * 6 polls/min = 12,000 readings/h
    run = run_edge(tmp_path, total_s, outage_from_s=total_s / 2, speed=speed, devices=20)
    check_bounds(run, total_s, speed)


@pytest.mark.soak
@pytest.mark.timeout(0)
def test_edge_soak_at_accelerated_time(tmp_path):
    total_s = float(os.environ.get("YUJING_SOAK_S", "1800"))
    speed = 300.0  # 30 real minutes = 6.25 scenario days; 20 gauges = 600 polls per real second
    run = run_edge(tmp_path, total_s, outage_from_s=total_s / 2, speed=speed, devices=20)
    print(f"soak: {total_s:.0f} s real, {total_s * speed / 86400:.1f} scenario days; RSS "
          f"{run.max_rss(2, 0.25 * total_s) / MB:.1f} -> {run.max_rss(0.75 * total_s, total_s) / MB:.1f} MB; "
          f"{run.log_lines} log lines, {run.log_bytes} bytes; outbox {run.outbox_bytes / MB:.1f} MB")
    check_bounds(run, total_s, speed)
