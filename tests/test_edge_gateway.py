"""Gateway behaviour beyond one poll: credentials, drills, flags, the bounded drain, the last word on stop."""

from __future__ import annotations

import asyncio
import math
import shutil
import sqlite3
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import aiomqtt
from conftest import wait_for
from servers import Mosquitto, free_port
from testing.edge import Collected, collect

from edge.outbox import Outbox
from edge.service import serve
from simulators.devices import simulate_devices
from testing.devices import deployment
from simulators.devices.values import Constant, Manual
from yujing.clock import Clock
from yujing.model import Reading, ReadingBatch
from yujing.runtime import Runtime


def level_gauge(port: int, **kw) -> dict:
    return {"id": "lv-1", "type": "modbus_tcp", "site": "RES-1", "port": port, "interval_s": 0.1, "timeout_s": 0.5,
            "registers": [{"quantity": "level_m", "unit": "m", "address": 0, "type": "float32", "order": "CDAB",
                           "min": 150, "max": 200, "stuck_after": 5}], **kw}


async def run_until(rt: Runtime, cond, what: str, timeout_s: float = 10) -> None:
    agent = asyncio.create_task(serve(rt))
    try:
        await wait_for(cond, timeout_s, what)
    finally:
        rt.stop.set()
        await asyncio.wait_for(agent, 10)


async def test_values_out_of_range_nan_or_frozen_are_flagged_not_dropped_and_drills_are_marked(
        mosquitto, prefix, tmp_path):
    port = free_port()
    cfg = deployment(tmp_path, [{"id": "gwq", "devices": [level_gauge(port)]}], mqtt_port=mosquitto.port,
                     prefix=prefix)
    clock, level = Clock(), Manual(170.0)
    rt = Runtime(cfg, clock, drill=True)
    got, ready = Collected(), asyncio.Event()
    sub = asyncio.create_task(collect(mosquitto.port, prefix, got, ready))
    await asyncio.wait_for(ready.wait(), 10)

    def qualities() -> list[str]:
        return [r.quality.value for r in got.readings()]

    async with simulate_devices(cfg.gateways[0].devices, {"lv-1": {"level_m": level}}, clock):
        agent = asyncio.create_task(serve(rt))
        await wait_for(lambda: "stuck" in qualities(), 10, "a frozen level flagged stuck")
        level.set(250.0)
        await wait_for(lambda: "out-of-range" in qualities(), 10, "an impossible level flagged")
        n = len(got.readings())
        level.set(math.nan)
        await wait_for(lambda: any(math.isnan(r.value) for r in got.readings()[n:]), 10, "NaN delivered, flagged")
        rt.stop.set()
        await asyncio.wait_for(agent, 10)
    sub.cancel()
    rs = got.readings()
    assert qualities()[:4] == ["ok"] * 4 and qualities()[4] == "stuck"  # the fifth identical value
    assert all(r.quality == "out-of-range" for r in rs if r.value == 250.0 or math.isnan(r.value))
    assert all(r.drill for r in rs)
    assert got.status["gwq"]["online"] is False and got.status["gwq"]["drill"] is True  # the goodbye on stop


async def test_the_backlog_drains_oldest_first_at_the_configured_rate(mosquitto, prefix, tmp_path):
    cfg = deployment(tmp_path, [{"id": "gwr", "uplink": {"rate_per_s": 400, "batch": 50}, "devices": []}],
                     mqtt_port=mosquitto.port, prefix=prefix)
    clock = Clock()
    t0 = clock.now()
    backlog = [Reading(id=f"b{i:04d}", site="S", sensor="d", quantity="level_m", value=i, unit="m",
                       ts=t0 + timedelta(seconds=i)) for i in range(800)]
    async with Outbox(cfg.path("", "edge-gwr.outbox"), "gwr") as ob:  # what a power cut left behind
        await ob.put(backlog)
    got, ready = Collected(), asyncio.Event()
    sub = asyncio.create_task(collect(mosquitto.port, prefix, got, ready))
    await asyncio.wait_for(ready.wait(), 10)
    start = asyncio.get_running_loop().time()
    arrived_at: list[float] = []

    def count() -> bool:
        while len(arrived_at) < len(got.batches):
            arrived_at.append(asyncio.get_running_loop().time() - start)
        return len(got.ids) >= 800

    await run_until(Runtime(cfg, clock), count, "the whole backlog")
    sub.cancel()
    assert got.ids[:800] == [r.id for r in backlog]
    assert max(len(b.readings) for b in got.batches) == 50
    assert 1.6 < arrived_at[-1] < 4.0, f"800 readings at 400/s took {arrived_at[-1]:.2f} s"


async def test_per_gateway_credentials_are_used_and_a_wrong_password_keeps_readings_in_the_outbox(
        private_server, prefix, tmp_path, monkeypatch):
    pwdir = Path(tempfile.mkdtemp(prefix="yujing-pw-"))  # Mosquitto drops root: the file must be readable by it
    pwdir.chmod(0o755)
    pw = pwdir / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "gw-cred", "s3cret"], check=True)
    pw.chmod(0o644)
    broker = private_server(Mosquitto, extra_conf=f"allow_anonymous false\npassword_file {pw}\n")
    port = free_port()
    gw = {"id": "gw-cred", "uplink": {"username": "gw-cred", "password": {"env": "GW_CRED_PW"},
                                      "reconnect_s": 0.1, "reconnect_max_s": 0.2},
          "devices": [level_gauge(port, interval_s=0.05)]}
    cfg = deployment(tmp_path / "cfg", [gw], mqtt_port=broker.port, prefix=prefix)
    clock = Clock()
    outbox = cfg.path("", "edge-gw-cred.outbox")
    got, ready = Collected(), asyncio.Event()
    async with simulate_devices(cfg.gateways[0].devices, {"lv-1": {"level_m": Constant(170)}}, clock):
        monkeypatch.setenv("GW_CRED_PW", "wrong")
        rt = Runtime(cfg, clock)
        await run_until(rt, lambda: outbox.exists() and _depth(outbox) >= 10, "readings held while refused")
        monkeypatch.setenv("GW_CRED_PW", "s3cret")
        sub_port = broker.port

        async def sub() -> None:
            async with aiomqtt.Client("127.0.0.1", sub_port, username="gw-cred", password="s3cret") as c:
                await c.subscribe(f"{prefix}/readings/+", qos=1)
                ready.set()
                async for m in c.messages:
                    got.ids.extend(r.id for r in ReadingBatch.model_validate_json(m.payload).readings)

        task = asyncio.create_task(sub())
        await asyncio.wait_for(ready.wait(), 10)
        held = _depth(outbox)
        await run_until(Runtime(cfg, clock), lambda: len(got.ids) >= held + 5, "the held readings and new ones")
        task.cancel()
    shutil.rmtree(pwdir, ignore_errors=True)
    assert len(set(got.ids)) == len(got.ids)


def _depth(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


def make_certs(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and one gateway's client certificate."""
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=yujing-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("gw-tls", [])):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.crt", *ext)
    for f in d.iterdir():
        f.chmod(0o644)


async def test_a_gateway_with_its_own_client_certificate_publishes_over_mutual_tls(private_server, prefix, tmp_path):
    certs = Path(tempfile.mkdtemp(prefix="yujing-tls-"))
    certs.chmod(0o755)
    try:
        make_certs(certs)
        tls_port = free_port()
        broker = private_server(Mosquitto, extra_conf=(
            f"listener {tls_port} 127.0.0.1\ncafile {certs}/ca.crt\ncertfile {certs}/server.crt\n"
            f"keyfile {certs}/server.key\nrequire_certificate true\n"))
        port = free_port()
        gw = {"id": "gw-tls", "devices": [level_gauge(port)],
              "uplink": {"tls": {"ca_file": str(certs / "ca.crt"), "cert_file": str(certs / "gw-tls.crt"),
                                 "key_file": str(certs / "gw-tls.key")}}}
        cfg = deployment(tmp_path, [gw], mqtt_port=tls_port, prefix=prefix)
        clock = Clock()
        got, ready = Collected(), asyncio.Event()
        sub = asyncio.create_task(collect(broker.port, prefix, got, ready))  # the plain listener, to watch
        await asyncio.wait_for(ready.wait(), 10)
        async with simulate_devices(cfg.gateways[0].devices, {"lv-1": {"level_m": Constant(170)}}, clock):
            await run_until(Runtime(cfg, clock), lambda: len(got.readings()) >= 3, "readings over TLS")
        sub.cancel()
    finally:
        shutil.rmtree(certs, ignore_errors=True)
    assert got.readings()[0].gateway == "gw-tls"
