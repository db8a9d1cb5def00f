"""deploy/README.md never rots: its YAML loads as a configuration, the files it installs exist, the secrets it
names are in the example environment file, and the shell steps parse."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from conftest import ROOT

from yujing.compose import load_config
from yujing.config import MqttConfig

README = (ROOT / "deploy" / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.DOTALL)


def test_readme_yaml_is_a_valid_configuration_with_the_example_areas_and_sites(tmp_path):
    yaml_blocks = [b for b in blocks("yaml") if b.startswith("# /etc/yujing/")]
    assert len(yaml_blocks) >= 3
    for i, text in enumerate(yaml_blocks):
        (tmp_path / f"readme-{i}.yaml").write_text(text)
    sites = sorted(set(re.findall(r"site: ([\w.-]+)", "\n".join(yaml_blocks))))
    (tmp_path / "places.yaml").write_text(yaml.safe_dump({
        "areas": [{"id": "zhongxian", "name": "忠县", "tier": "county"}],
        "sites": [{"id": s, "name": s, "kind": "rain", "area": "zhongxian"} for s in sites]}, allow_unicode=True))
    cfg = load_config(tmp_path)
    gw = cfg.gateways[0]
    assert gw.uplink.username == gw.id, "the broker's ACL keys on username == gateway id"
    assert str(cfg.mqtt.tls.ca_file) == "/etc/yujing/ca.crt" and cfg.mqtt.port == 8883
    assert cfg.deployment.data_dir == "/var/lib/yujing"  # the units' StateDirectory


def test_every_secret_the_readme_names_is_in_the_env_example():
    env_names = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", (ROOT / "deploy" / "yujing.env.example").read_text(), re.MULTILINE))
    named = set(re.findall(r"\{env: ([A-Z0-9_]+)\}", README)) - {"NAME"}
    assert named and named <= env_names, named - env_names


def test_every_file_the_readme_installs_is_shipped():
    paths = set(re.findall(r"/opt/yujing/src/(deploy/[\w./@-]+)", README))
    for brace in re.findall(r"/opt/yujing/src/deploy/systemd/yujing-\{([\w,]+)\}\.service", README):
        paths |= {f"deploy/systemd/yujing-{p}.service" for p in brace.split(",")}
    paths = {p for p in paths if not p.endswith("-")}
    assert "deploy/systemd/yujing-edge@.service" in paths
    for p in sorted(paths):
        assert (ROOT / p).exists(), f"README installs {p}, which is not in the repository"


@pytest.mark.parametrize("i", range(len(blocks("sh"))))
def test_readme_shell_steps_are_valid_bash(i):
    r = subprocess.run(["bash", "-n"], check=False, input=blocks("sh")[i].replace("<the Yujing repository URL>", "URL"),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_alternative_mqtt_sections_are_valid():
    alternatives = [b for b in blocks("yaml") if b.startswith("# alternative")]
    assert alternatives
    for text in alternatives:
        cfg = MqttConfig.model_validate(yaml.safe_load(text)["mqtt"])
        assert cfg.tls is not None and cfg.username is None
