"""The ``console:`` section: where the duty office's web console listens and what its map draws."""

from __future__ import annotations

import enum
import ipaddress

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Language(enum.StrEnum):
    ZH = "zh"
    EN = "en"


class Tls(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cert_file: str
    key_file: str


class ConsoleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True  # part of `yujing run`; `yujing console CONFIG` serves it alone
    host: str = "127.0.0.1"  # loopback by default: anything else needs tls
    port: int = Field(default=8090, ge=0, le=65535)  # 0: any free port (tests)
    tls: Tls | None = None
    language: Language = Language.ZH  # the default; every page has a switch (?lang=en)
    # The county intranet has no internet: no tiles by default, sites on a plain background. A tile URL
    # template of the county's own tile server ({z}/{x}/{y}) draws a base map under them.
    tiles: str = ""
    tiles_attribution: str = ""
    boundaries: str = ""  # GeoJSON of township/village boundaries, relative to the config directory
    reports: str = ""  # directory of drill reports (each a folder with report.json); default <data_dir>/reports
    series_max_points: int = Field(default=2000, ge=100)  # per quantity on a site's chart: thinned beyond this

    @model_validator(mode="after")
    def _loopback_or_tls(self) -> ConsoleConfig:
        if self.tls is None and not _loopback(self.host):
            raise ValueError(f"host {self.host!r} is not loopback: configure tls (cert_file, key_file) "
                             "before the console is reachable from elsewhere (logins and sessions would travel in clear)")
        return self


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
