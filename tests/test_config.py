"""Configuration errors name the file, the line and the field, and say what was expected."""

import shutil
from pathlib import Path

import pytest

from yujing.cli import main
from yujing.compose import load_config
from yujing.config import ConfigError
from yujing.config.secrets import Secret

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "zhongxian"


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    dest = tmp_path / "dep"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("*.csv.gz"))
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(needle)


def test_shipped_example_is_valid():
    cfg = load_config(EXAMPLE)
    assert cfg.sites and cfg.gateways and cfg.areas
    assert [a.tier.depth for a in cfg.lineage(cfg.sites[0].area)][-1] == 1  # reaches the city


def test_wrong_type_names_file_line_and_field(deployment: Path):
    f = deployment / "mqtt.yaml" if (deployment / "mqtt.yaml").exists() else deployment / "deployment.yaml"
    edit(f, "port: 18831", 'port: "eighteen"')
    with pytest.raises(ConfigError) as exc:
        load_config(deployment)
    (problem,) = exc.value.problems
    line = line_of(f, "eighteen")
    assert problem.startswith(f"{f}:{line}: mqtt.port: ")
    assert "valid integer" in problem


def test_misspelt_field_is_reported_at_its_line(deployment: Path):
    f = deployment / "deployment.yaml"
    edit(f, "  embedded: true", "  embeded: true")
    with pytest.raises(ConfigError) as exc:
        load_config(deployment)
    assert f"{f}:{line_of(f, 'embeded')}: mqtt.embeded: unknown field" in exc.value.problems[0]


def test_dangling_reference_is_reported_at_its_line(tmp_path: Path):
    f = tmp_path / "one.yaml"
    f.write_text("areas:\n  - {id: c, name: C, tier: county}\nsites:\n  - id: S1\n    name: s\n    kind: rain\n    area: nowhere\n")
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert exc.value.problems == [f"{f}:7: sites[0].area: no area with id 'nowhere'"]


def test_duplicate_key_and_bad_yaml_are_located(tmp_path: Path):
    f = tmp_path / "a.yaml"
    f.write_text("mqtt:\n  port: 1\n  port: 2\n")
    with pytest.raises(ConfigError, match=rf"{f}:3: mqtt.port: duplicate key"):
        load_config(f)
    f.write_text("mqtt: [\n")
    with pytest.raises(ConfigError, match=rf"{f}:2: not valid YAML"):
        load_config(f)


def test_tier_order_is_enforced(tmp_path: Path):
    f = tmp_path / "a.yaml"
    f.write_text("areas:\n  - {id: v, name: V, tier: village}\n  - {id: c, name: C, tier: county, parent: v}\n")
    with pytest.raises(ConfigError, match="a county cannot sit under a village"):
        load_config(f)


def test_secrets_are_references_never_values(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("YJ_TOKEN", "s3cret")
    assert Secret(env="YJ_TOKEN").get() == "s3cret"
    assert "s3cret" not in repr(Secret(env="YJ_TOKEN"))
    f = tmp_path / "a.yaml"
    f.write_text("alerts:\n  twilio:\n    auth_token: plain-text-token\n")
    with pytest.raises(ConfigError, match=rf"{f}:3: alerts.twilio.auth_token: "):
        load_config(f)


def test_check_command_exits_non_zero_on_error(deployment: Path, capsys):
    assert main(["check", str(EXAMPLE)]) == 0
    assert "ok" in capsys.readouterr().out
    edit(deployment / "deployment.yaml", "  embedded: true", "  embedded: maybe")
    with pytest.raises(SystemExit) as exc:
        main(["check", str(deployment)])
    assert exc.value.code == 2
    assert "mqtt.embedded" in capsys.readouterr().err


def test_gateway_username_must_be_its_id_or_the_acl_would_drop_its_readings_silently(tmp_path: Path):
    f = tmp_path / "a.yaml"
    f.write_text("areas:\n  - {id: c, name: C, tier: county}\n"
                 "gateways:\n  - id: gw-a\n    uplink:\n      username: gw-b\n")
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert exc.value.problems[0].startswith(f"{f}:6: gateways[0].uplink.username: must equal the gateway id")
    f.write_text(f.read_text().replace("gw-b", "gw-a"))
    assert load_config(f).gateways[0].uplink.username == "gw-a"
