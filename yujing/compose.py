"""The top floor's configuration: a whole deployment, every part's section composed in one place.

    cfg = load_config("config/zhongxian")   # a directory of YAML files, or one file

The ground floor (:mod:`yujing.config`) knows the shared sections; each part owns its own section's
model (``edge/config.py``, ``collector/config.py``, ``rules/config.py``, ``alerts/config.py``,
``duty/config.py``, ``upstream/config.py``, ``console/config.py``, ``simulators/config.py``). Only here are they put together, with the checks that cross sections
(a gateway's devices name sites; a gateway's MQTT username is its id). The ``yujing`` command, the
drills and the tests load deployments through this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from alerts.config import AlertsConfig
from collector.config import CollectorConfig
from console.config import ConsoleConfig
from duty.config import DutyConfig
from edge.config import GatewayConfig
from rules.config import RulesConfig, SiteThresholds
from simulators.config import SimulationConfig
from upstream.config import UpstreamConfig
from yujing import config as ground
from yujing.config.loader import Loc

__all__ = ["Config", "Site", "load_config"]


class Site(ground.Site):
    thresholds: SiteThresholds = Field(default_factory=SiteThresholds)  # read by the rules packs


class Config(ground.BaseConfig):
    sites: list[Site] = Field(default_factory=list)
    gateways: list[GatewayConfig] = Field(default_factory=list)
    collector: CollectorConfig = Field(default_factory=CollectorConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    duty: DutyConfig = Field(default_factory=DutyConfig)
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)  # the web console's map and words
    simulation: SimulationConfig | None = None

    def cross_check(self) -> Iterator[tuple[Loc, str]]:
        yield from super().cross_check()
        yield from ground.unique(self.gateways, "gateways")
        for i, src in enumerate(self.upstream.sources):
            for j, area in enumerate(src.may_address):
                if area not in self._areas:
                    yield ("upstream", "sources", i, "may_address", j), f"no area with id {area!r}"
        if self.mqtt.embedded and self.collector.workers not in ("auto", 1):
            yield ("collector", "workers"), ("the embedded broker speaks MQTT 3.1.1 (no shared subscriptions): "
                                             "use workers: 1 (or auto) with it")
        device_ids: dict[str, Loc] = {}
        for g, gw in enumerate(self.gateways):
            if gw.uplink.username is not None and gw.uplink.username != gw.id:
                # The broker's ACL (deploy/mosquitto/acl: yujing/readings/%u) lets a gateway publish only
                # under its own username; MQTT 3.1.1 cannot refuse a denied publish, so a mismatch would
                # drop every reading silently while the outbox believed them delivered.
                yield ("gateways", g, "uplink", "username"), (
                    f"must equal the gateway id {gw.id!r}: the broker ACL lets a gateway publish only its own topics")
            for d, dev in enumerate(gw.devices):
                loc: Loc = ("gateways", g, "devices", d)
                if dev.site not in self._sites:
                    yield loc + ("site",), f"no site with id {dev.site!r}"
                if dev.id in device_ids:
                    yield loc + ("id",), f"device id {dev.id!r} is already used"
                device_ids[dev.id] = loc


def load_config(path: str | Path) -> Config:
    """Load and validate a deployment; raises :class:`yujing.errors.ConfigError` naming file, line and field."""
    return ground.load(path, Config)
