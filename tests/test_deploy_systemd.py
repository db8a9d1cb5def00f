"""systemd integration: sd_notify READY/WATCHDOG/STOPPING over a real datagram socket, the shipped units' command
lines run as systemd would run them, and the unit files checked by ``systemd-analyze verify``."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

from yujing import systemd

UNITS = ROOT / "deploy" / "systemd"
SERVICES = ["yujing-edge@.service", "yujing-collector.service", "yujing-rules.service", "yujing-alerts.service",
            "yujing-duty.service",
            "yujing.service"]


class NotifySocket:
    """What a service manager sees: a unix datagram socket collecting ``KEY=value`` messages."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.address = address
        self.states: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                return self.states
            self.states.extend(data.decode().split("\n"))

    def wait(self, state: str, timeout_s: float = 15.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while self.drain().count(state) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {state} x{count} within {timeout_s} s; got {self.states}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch) -> Iterator[NotifySocket]:
    s = NotifySocket(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", s.address)
    yield s
    s.close()


def test_notify_is_a_no_op_outside_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_notify_sends_every_state_in_one_datagram(notify_socket):
    assert systemd.notify("READY=1", "STATUS=polling 3 devices")
    assert notify_socket.drain() == ["READY=1", "STATUS=polling 3 devices"]


def test_notify_reaches_an_abstract_namespace_socket(monkeypatch):
    s = NotifySocket(f"@yujing-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", s.address)
        assert systemd.notify("WATCHDOG=1")
        assert s.drain() == ["WATCHDOG=1"]
    finally:
        s.close()


def test_notify_to_a_vanished_manager_does_not_raise(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert systemd.notify("READY=1") is False


@pytest.mark.parametrize(("usec", "pid", "expected"), [
    ("60000000", None, 30.0),        # WatchdogSec=60: ping every 30 s
    ("60000000", "self", 30.0),
    ("60000000", "1", None),         # the watchdog is for another process
    ("0", None, None),
    ("junk", None, None),
    (None, None, None),
])
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(usec, pid, expected, monkeypatch):
    for var, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    assert systemd.watchdog_interval_s() == expected


async def test_supervise_sends_ready_then_watchdog_pings_then_stopping(notify_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 50 ms
    stop = asyncio.Event()
    task = asyncio.create_task(systemd.supervise(stop, "running edge"))
    deadline = time.monotonic() + 5
    while notify_socket.drain().count("WATCHDOG=1") < 3:
        assert time.monotonic() < deadline, notify_socket.states
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 2)
    states = notify_socket.drain()
    assert states[:2] == ["READY=1", "STATUS=running edge"]
    assert states.index("STOPPING=1") > max(i for i, s in enumerate(states) if s == "WATCHDOG=1")


# --- the shipped units ------------------------------------------------------------------------------------------

def unit(name: str) -> dict[str, list[str]]:
    """``key -> values`` of a unit file (keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_supervised_restarted_and_confined(name):
    u = unit(name)
    required = {
        "Type": "notify", "Restart": "always", "EnvironmentFile": "/etc/yujing/yujing.env",
        "StateDirectory": "yujing", "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
        "User": "yujing", "StartLimitIntervalSec": "0",
    }
    for key, value in required.items():
        assert u.get(key) == [value], f"{name}: {key}={u.get(key)}, want {value}"
    assert 10 <= int(u["WatchdogSec"][0]) <= 300
    assert int(u["RestartSec"][0]) >= 1
    assert "MemoryMax" in u and "LogRateLimitBurst" in u


def test_edge_unit_fits_a_small_arm_gateway_and_reaches_serial_ports():
    u = unit("yujing-edge@.service")
    assert u["MemoryMax"] == ["256M"]
    assert u["ExecStart"] == ["/opt/yujing/bin/yujing edge /etc/yujing --gateway %i"]
    assert "dialout" in u["SupplementaryGroups"]
    assert "char-ttyUSB rw" in u["DeviceAllow"]


def test_env_example_names_every_secret_and_holds_no_value():
    lines = [ln for ln in (ROOT / "deploy" / "yujing.env.example").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    names = []
    for ln in lines:
        m = re.fullmatch(r"([A-Z][A-Z0-9_]*)=", ln)
        assert m, f"yujing.env.example must hold names only, got {ln!r}"
        names.append(m.group(1))
    assert {"TWILIO_AUTH_TOKEN", "INFLUX_TOKEN", "MQTT_PASSWORD_CENTRAL"} <= set(names)
    for example in (ROOT / "config").rglob("*.yaml"):  # every secret an example config names is listed
        for var in re.findall(r"\{\s*env:\s*([A-Z0-9_]+)\s*\}", example.read_text()):
            assert var in names or var.startswith("MQTT_PASSWORD_GW_"), f"{example}: {var} not in yujing.env.example"


def instantiated_units(tmp_path: Path) -> list[str]:
    """The shipped units, templates instantiated, ExecStart pointed at this interpreter (verify insists that it
    exists); everything else verbatim."""
    exe = Path(sys.executable).resolve()
    names = []
    for f in UNITS.iterdir():
        name = f.name.replace("@.", "@gw-zhongzhou-01.")
        (tmp_path / name).write_text(f.read_text().replace("/opt/yujing/bin/yujing", str(exe)))
        names.append(name)
    return sorted(names)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_every_unit(tmp_path):
    names = instantiated_units(tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", *names], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    ours = [ln for ln in (r.stdout + r.stderr).splitlines() if "yujing" in ln]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", [n.replace("@.", "@gw-zhongzhou-01.") for n in SERVICES])
def test_systemd_rates_every_service_well_confined(name, tmp_path):
    instantiated_units(tmp_path)
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", f"./{name}"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    if "--offline" in r.stderr and r.returncode != 0:
        pytest.skip(f"systemd-analyze too old for --offline: {r.stderr.strip()}")
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, f"{name}: exposure {m.group(1)} (0 = locked down, 10 = exposed)"


def test_edge_unit_command_line_notifies_ready_pings_watchdog_and_stops_cleanly(tmp_path, mosquitto):
    """Run the edge unit's ExecStart (only paths swapped) with the environment systemd would give it."""
    conf = tmp_path / "etc-yujing"
    conf.mkdir()
    (conf / "deployment.yaml").write_text(
        f"deployment: {{data_dir: {tmp_path / 'state'}}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, topic_prefix: t{os.getpid()}sd}}\n")
    (conf / "gateways.yaml").write_text(
        "gateways:\n  - id: gw-zhongzhou-01\n    heartbeat_s: 1\n"
        "    uplink: {username: gw-zhongzhou-01, password: {env: MQTT_PASSWORD_GW_ZHONGZHOU_01}}\n")
    exec_start = unit("yujing-edge@.service")["ExecStart"][0]
    argv = shlex.split(exec_start.replace("%i", "gw-zhongzhou-01").replace("/etc/yujing", str(conf)))
    assert argv[0] == "/opt/yujing/bin/yujing"
    argv = [sys.executable, "-m", "yujing", *argv[1:]]

    sock = NotifySocket(str(tmp_path / "notify.sock"))
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_PID")}
    for line in (ROOT / "deploy" / "yujing.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            env[line.split("=", 1)[0]] = ""
    secret = "gw-password-never-logged-7f3a"
    env.update(NOTIFY_SOCKET=sock.address, WATCHDOG_USEC="400000", MQTT_PASSWORD_GW_ZHONGZHOU_01=secret,
               PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sock.wait("READY=1")
        sock.wait("WATCHDOG=1", count=3)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=int(unit("yujing-edge@.service")["TimeoutStopSec"][0]))
        sock.wait("STOPPING=1", timeout_s=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert secret.encode() not in err
    assert sock.states.index("READY=1") < sock.states.index("STOPPING=1")
