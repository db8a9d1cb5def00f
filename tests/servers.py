"""Real test servers, started from the Debian packages' binaries on loopback.

Each server runs in its own temporary directory on a free port, so tests can
stop and restart one (an outage) without touching the others. ``.ci/run``
installs the packages (``tests/install-servers.sh``); this module starts them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from simulators.ports import free_port


def _wait(cond, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up within {timeout_s} s")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:
            return 200 <= r.status < 300
    except OSError:
        return False


class Server:
    """One server process; ``stop()`` and ``start()`` again keep its data (a restart, not a wipe)."""

    binary = ""
    name = ""

    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        if shutil.which(self.binary) is None:
            raise RuntimeError(f"{self.binary} is not installed: run tests/install-servers.sh (as root)")
        self.port = port or free_port()
        self.dir = workdir or Path(tempfile.mkdtemp(prefix=f"yujing-{self.name}-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return _port_open(self.port)

    def start(self) -> "Server":
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=logf, stderr=subprocess.STDOUT, cwd=self.dir)
        logf.close()
        try:
            _wait(lambda: self.ready() or self.proc.poll() is not None, self.name)
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited at start: {self.log.read_text()[-2000:]}")
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        (self.proc.kill if kill else self.proc.terminate)()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        _wait(lambda: not _port_open(self.port), f"{self.name} port release", 10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self) -> None:
        self.stop(kill=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class Mosquitto(Server):
    binary = "mosquitto"
    name = "mosquitto"

    def __init__(self, port: int | None = None, workdir: Path | None = None, extra_conf: str = "",
                 autosave_s: int = 1) -> None:
        super().__init__(port, workdir)
        self.extra_conf, self.autosave_s = extra_conf, autosave_s

    def command(self) -> list[str]:
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            f"persistence true\npersistence_location {self.dir}/\n"
            f"autosave_interval {self.autosave_s}\n"  # tests: sessions on disk within a second
            "max_queued_messages 0\n"  # unbounded: benchmarks queue a 100,000-message backlog
            "max_inflight_messages 0\n"
            "max_keepalive 65535\n"
            # as root, mosquitto drops to user "mosquitto", which cannot write the 0700 temp dir: persistence
            # would fail and a restart would lose every session and the messages queued for it
            + ("user root\n" if os.geteuid() == 0 else "")
            + self.extra_conf
        )
        return [self.binary, "-c", str(conf)]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


class InfluxDB1(Server):
    """InfluxDB 1.6.7 (Debian ``influxdb``): the v1 ``/write`` and ``/query`` API."""

    binary = "influxd"
    name = "influxdb"

    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        super().__init__(port, workdir)
        self.rpc_port = free_port()

    def command(self) -> list[str]:
        conf = self.dir / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{self.dir}/meta"\n'
            f'[data]\n  dir = "{self.dir}/data"\n  wal-dir = "{self.dir}/wal"\n  query-log-enabled = false\n'
            f'  wal-fsync-delay = "0s"\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            f'  max-body-size = 0\n'
            '[monitor]\n  store-enabled = false\n'
            '[continuous_queries]\n  enabled = false\n'
        )
        return [self.binary, "-config", str(conf)]

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/ping")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, q: str, db: str = "yujing") -> dict:
        import json
        import urllib.parse

        data = urllib.parse.urlencode({"q": q, "db": db}).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=30) as r:
            return json.loads(r.read())

    def create_db(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"', db=db)


class VictoriaMetrics(Server):
    """VictoriaMetrics (Debian ``victoria-metrics``): accepts ``/api/v2/write`` as influxdb-client sends it."""

    binary = "victoria-metrics"
    name = "victoria-metrics"

    def command(self) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.dir}/data",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ]

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/health")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def flush(self) -> None:
        """Make just-written samples searchable (VictoriaMetrics buffers them about a second)."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()

    def export(self, match: str = '{__name__!=""}') -> list[dict]:
        """All raw samples matching a series selector, as /api/v1/export JSON lines."""
        import json
        import urllib.parse

        self.flush()
        q = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{q}", timeout=30) as r:
            return [json.loads(line) for line in r.read().splitlines() if line.strip()]

