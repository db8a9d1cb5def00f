"""Mosquitto on the configuration Yujing ships (deploy/mosquitto/): its ACL, password file and TLS listeners,
moved under a temporary folder. Shared by the ACL table tests and the gateway-identity tests."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import aiomqtt
from conftest import ROOT
from servers import Mosquitto, free_port

DEPLOY = ROOT / "deploy"
PASSWORDS = {"gw-a": "pw-gateway-a", "gw-b": "pw-gateway-b", "yujing-collector": "pw-collector",
             "yujing-rules": "pw-rules", "yujing-alerts": "pw-alerts", "yujing-central": "pw-central",
             "yujing-viewer": "pw-viewer", "yujing-duty": "pw-duty"}


def shipped_conf(tmp: Path, ports: dict[int, int]) -> str:
    """deploy/mosquitto/yujing.conf with /etc and /var paths moved under ``tmp`` and listener ports remapped."""
    text = (DEPLOY / "mosquitto" / "yujing.conf").read_text()
    paths = {
        "/etc/mosquitto/ca_certificates/yujing-ca.crt": tmp / "certs" / "ca.crt",
        "/etc/mosquitto/certs/yujing-broker.crt": tmp / "certs" / "broker.crt",
        "/etc/mosquitto/certs/yujing-broker.key": tmp / "certs" / "broker.key",
        "/etc/mosquitto/yujing.passwd": tmp / "passwd",
        "/etc/mosquitto/yujing.acl": tmp / "acl",
    }
    for shipped, local in paths.items():
        assert shipped in text, f"yujing.conf no longer mentions {shipped}: update this test with it"
        text = text.replace(shipped, str(local))

    def listener(m: re.Match[str]) -> str:
        return f"listener {ports[int(m.group(1))]} 127.0.0.1"

    text, n = re.subn(r"^listener (\d+)(?: \S+)?$", listener, text, flags=re.MULTILINE)
    assert n == len(ports), f"expected listeners {sorted(ports)} in yujing.conf, found {n}"
    return text


# Debian's /etc/mosquitto/mosquitto.conf (package mosquitto 2.0.x); yujing.conf is installed into its conf.d.
DEBIAN_MAIN_CONF = """\
pid_file /run/mosquitto/mosquitto.pid
persistence true
persistence_location /var/lib/mosquitto/
log_dest file /var/log/mosquitto/mosquitto.log
include_dir /etc/mosquitto/conf.d
"""


def debian_main_conf(tmp: Path) -> str:
    """The distribution's main config (the installed one if present), its paths moved under ``tmp``."""
    installed = Path("/etc/mosquitto/mosquitto.conf")
    text = installed.read_text() if installed.exists() else DEBIAN_MAIN_CONF
    text = re.sub(r"^pid_file .*$", f"pid_file {tmp}/mosquitto.pid", text, flags=re.MULTILINE)
    text = re.sub(r"^persistence_location .*$", f"persistence_location {tmp}/", text, flags=re.MULTILINE)
    text = re.sub(r"^log_dest .*$", f"log_dest file {tmp}/mosquitto.log", text, flags=re.MULTILINE)
    text = re.sub(r"^include_dir .*$", f"include_dir {tmp}/conf.d", text, flags=re.MULTILINE)
    return text + "user root\n"  # run as whoever runs pytest: the temporary files are theirs


class ShippedMosquitto(Mosquitto):
    """Mosquitto on the shipped configuration. ``port`` is the loopback plain listener (1883 in production)."""

    def __init__(self) -> None:
        super().__init__()
        self.tls_port, self.mtls_port = free_port(), free_port()
        certs = self.dir / "certs"
        subprocess.run(["bash", str(DEPLOY / "gen-test-certs.sh"), str(certs), "localhost", "gw-a", "gw-b"],
                       check=True, capture_output=True)
        self.certs = certs
        shutil.copyfile(DEPLOY / "mosquitto" / "acl", self.dir / "acl")
        pw = self.dir / "passwd"
        for i, (user, password) in enumerate(PASSWORDS.items()):
            subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(pw), user, password],
                           check=True, capture_output=True)
        pw.chmod(0o600)

    def command(self) -> list[str]:
        (self.dir / "conf.d").mkdir(exist_ok=True)
        (self.dir / "conf.d" / "yujing.conf").write_text(
            shipped_conf(self.dir, {8883: self.tls_port, 8884: self.mtls_port, 1883: self.port}))
        conf = self.dir / "mosquitto.conf"
        conf.write_text(debian_main_conf(self.dir))
        return [self.binary, "-c", str(conf)]


def plain(broker: ShippedMosquitto, user: str | None, password: str | None = None, **kw) -> aiomqtt.Client:
    if user is not None and password is None:
        password = PASSWORDS[user]
    kw.setdefault("identifier", f"t-{user}")
    return aiomqtt.Client("127.0.0.1", broker.port, username=user, password=password, timeout=5, **kw)
