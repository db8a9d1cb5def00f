"""A minimal deployment around some gateways, for tests, benchmarks and quick trials of a device config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from yujing.compose import Config, load_config


def deployment(directory: Path, gateways: list[dict[str, Any]], *, mqtt_port: int, prefix: str = "yujing",
               mqtt: dict[str, Any] | None = None) -> Config:
    """Write a config directory with one area, a site per device and these gateways; load it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sites = sorted({d["site"] for g in gateways for d in g.get("devices", [])})
    doc = {
        "deployment": {"name": "rig", "data_dir": str(directory / "var")},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "topic_prefix": prefix, **(mqtt or {})},
        "areas": [{"id": "county", "name": "县", "tier": "county"}],
        "sites": [{"id": s, "name": s, "kind": "rain", "area": "county"} for s in sites],
        "gateways": gateways,
    }
    (directory / "deployment.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return load_config(directory)
