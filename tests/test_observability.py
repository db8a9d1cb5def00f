"""Every part, run alone as the ``yujing`` command runs it, serves ``/metrics`` and ``/health``; ``/health``
says 200 while the part does its job and 503 while it cannot (its broker away), and the real ``promtool``
accepts every part's real ``/metrics`` output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
from datetime import datetime, timezone
import urllib.request
from pathlib import Path

import pytest
import yaml
from servers import InfluxDB1, Mosquitto, free_port

from yujing import topics
from yujing.model import Reading, ReadingBatch

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("edge", "collector", "rules", "alerts", "duty")
# a metric each part exports from its start, so its /metrics is its own and not an empty registry
OWN_METRIC = {"edge": "yujing_edge_uplink_connected", "collector": "yujing_collector_db_up",
              "rules": "yujing_rules_mqtt_subscribed", "alerts": "yujing_alerts_mqtt_subscribed",
              "duty": "yujing_duty_mqtt_connected"}


def write_config(conf: Path, mqtt_port: int, ports: dict[str, int], **sections: dict) -> None:
    conf.mkdir()
    doc: dict = {
        "deployment": {"name": "obs", "data_dir": str(conf.parent / "state")},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "topic_prefix": f"obs{os.getpid()}"},
        "gateways": [{"id": "gw-obs-01", "heartbeat_s": 1, "metrics_port": ports["edge"], "devices": []}],
        "collector": {"metrics_port": ports["collector"]},
        "rules": {"metrics_port": ports["rules"]},
        "alerts": {"metrics_port": ports["alerts"], "webhook": {"port": 0},
                   "twilio": {"base_url": f"http://127.0.0.1:{free_port()}", "configure_number": False}},
        "duty": {"metrics_port": ports["duty"], "port": 0},
    }
    for name, extra in sections.items():
        doc[name] = {**doc[name], **extra}
    (conf / "deployment.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def health(port: int) -> tuple[int, dict] | None:
    try:
        status, body = get(f"http://127.0.0.1:{port}/health")
    except OSError:
        return None  # not listening yet
    return status, json.loads(body)


def wait_health(port: int, status: int, proc: subprocess.Popen, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.log.seek(0)  # type: ignore[attr-defined]
            raise AssertionError(f"the part exited: {proc.log.read().decode()[-2000:]}")  # type: ignore[attr-defined]
        last = health(port)
        if last is not None and last[0] == status:
            return last[1]
        time.sleep(0.1)
    raise AssertionError(f"/health on {port} never answered {status}; last {last}")


class Running:
    def __init__(self, argv: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.log = (cwd / "part.log").open("w+b")  # a file, not a pipe nobody reads while it runs
        self.proc = subprocess.Popen([sys.executable, "-m", "yujing", *argv], cwd=cwd, env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        self.proc.log = self.log  # type: ignore[attr-defined]

    def __enter__(self) -> subprocess.Popen:
        return self.proc

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def promtool_check_metrics(text: bytes) -> None:
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60)
    # exit 0: the exposition parses and lints clean (3: a lint problem such as a counter without _total; 1: unparsable)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()


@pytest.mark.parametrize("part", PARTS)
def test_each_part_alone_serves_health_200_while_connected_503_while_its_broker_is_away_and_valid_metrics(
        part, private_server, tmp_path):
    broker = private_server(Mosquitto)
    ports = {p: free_port() for p in PARTS}
    write_config(tmp_path / "conf", broker.port, ports)
    argv = [part, str(tmp_path / "conf")] + (["--gateway", "gw-obs-01"] if part == "edge" else [])
    with Running(argv, tmp_path) as proc:
        up = wait_health(ports[part], 200, proc)
        assert up["ok"] is True and up["connected"] is True
        status, text = get(f"http://127.0.0.1:{ports[part]}/metrics")
        assert status == 200 and OWN_METRIC[part].encode() in text
        promtool_check_metrics(text)
        broker.stop()
        down = wait_health(ports[part], 503, proc)
        assert down["ok"] is False and down["connected"] is False
        broker.start()
        assert wait_health(ports[part], 200, proc)["ok"] is True
        # only this part's server is up: the others' ports were never bound
        assert all(health(ports[p]) is None for p in PARTS if p != part)


def test_the_collectors_health_says_503_while_its_database_refuses_writes_and_200_once_it_is_back(
        mosquitto, private_server, tmp_path):
    influx = private_server(InfluxDB1)
    ports = {p: free_port() for p in PARTS}
    store = {"type": "influxdb_v1", "url": influx.url, "database": "obs", "timeout_s": 1}
    write_config(tmp_path / "conf", mosquitto.port, ports, collector={"store": store, "retry_max_s": 1})
    path = tmp_path / "conf" / "deployment.yaml"
    doc = yaml.safe_load(path.read_text())
    # the reading sent must be one of gw-obs-01's own devices, or the collector refuses it (yujing/provenance.py)
    doc["areas"] = [{"id": "c", "name": "县", "tier": "county"}]
    doc["sites"] = [{"id": "S", "name": "S", "kind": "rain", "area": "c"}]
    doc["gateways"][0]["devices"] = [{"id": "rg", "type": "modbus_tcp", "site": "S",
                                      "registers": [{"quantity": "rain_mm", "address": 0}]}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    prefix = doc["mqtt"]["topic_prefix"]

    def send(i: int) -> None:
        r = Reading(id=f"obs-{i}", site="S", sensor="rg", quantity="rain_mm", value=1.0, unit="mm",
                    ts=datetime(2026, 7, 14, 3, 0, i, tzinfo=timezone.utc), gateway="gw-obs-01")
        payload = ReadingBatch(gateway="gw-obs-01", readings=[r]).model_dump_json()
        subprocess.run(["mosquitto_pub", "-p", str(mosquitto.port), "-q", "1", "-t",
                        topics.readings(prefix, "gw-obs-01"), "-m", payload], check=True, timeout=10)

    with Running(["collector", str(tmp_path / "conf")], tmp_path) as proc:
        assert wait_health(ports["collector"], 200, proc)["db_up"] is True
        influx.stop()
        send(1)  # the write that finds the database away
        down = wait_health(ports["collector"], 503, proc)
        assert down["db_up"] is False and down["connected"] is True
        influx.start()
        send(2)
        back = wait_health(ports["collector"], 200, proc)
    assert back["db_up"] is True and back["spool_readings"] == 0


def test_yujing_run_serves_each_parts_health_on_its_own_port(mosquitto, tmp_path):
    ports = {p: free_port() for p in PARTS}
    write_config(tmp_path / "conf", mosquitto.port, ports)
    with Running(["run", str(tmp_path / "conf")], tmp_path) as proc:
        docs = {p: wait_health(ports[p], 200, proc) for p in PARTS}
        _, text = get(f"http://127.0.0.1:{ports['rules']}/metrics")
    assert all(d["ok"] for d in docs.values())
    assert docs["edge"]["gateway"] == "gw-obs-01" and "db_up" in docs["collector"]
    assert all(name.encode() in text for name in OWN_METRIC.values())  # one process, one registry


def exported_names(text: bytes) -> set[str]:
    """Every metric family /metrics declares (``# TYPE`` lines: labelled ones show before their first sample),
    with the sample names a histogram or counter adds."""
    out = set()
    for m in re.finditer(rb"^# TYPE (\S+) (\S+)$", text, re.M):
        name, kind = m.group(1).decode(), m.group(2).decode()
        out.add(name)
        if kind == "histogram":
            out |= {name + "_bucket", name + "_sum", name + "_count"}
    return out


def test_every_metric_the_alerting_rules_name_is_one_the_parts_export(mosquitto, tmp_path):
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "yujing-alerts.yml").read_text())
    named = {n for g in rules["groups"] for r in g["rules"] for n in re.findall(r"\byujing_[a-z_]+", r["expr"])}
    assert len(named) >= 15
    ports = {p: free_port() for p in PARTS}
    write_config(tmp_path / "conf", mosquitto.port, ports)
    with Running(["run", str(tmp_path / "conf")], tmp_path) as proc:
        wait_health(ports["alerts"], 200, proc)
        _, text = get(f"http://127.0.0.1:{ports['alerts']}/metrics")
    assert named - exported_names(text) == set()


def test_a_gateway_entry_accepts_metrics_host_and_port():
    from edge.config import GatewayConfig

    gw = GatewayConfig.model_validate({"id": "gw-1", "metrics_host": "0.0.0.0", "metrics_port": 9101})
    assert (gw.metrics_host, gw.metrics_port) == ("0.0.0.0", 9101)
