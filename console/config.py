"""The ``console:`` section: what the duty office's web console draws and says.

Where it listens is the duty office's (``duty.host``/``duty.port``/``duty.tls``): the console's pages are
served by the same application as the API, so there is one listener, one login and one TLS setting.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field


class Language(enum.StrEnum):
    ZH = "zh"
    EN = "en"


class ConsoleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    language: Language = Language.ZH  # the default; every page has a switch (?lang=en)
    # The county intranet has no internet: no tiles by default, sites on a plain background. A tile URL
    # template of the county's own tile server ({z}/{x}/{y}) draws a base map under them.
    tiles: str = ""
    tiles_attribution: str = ""
    boundaries: str = ""  # GeoJSON of township/village boundaries, relative to the config directory
    reports: str = ""  # directory of drill reports (each a folder with report.json); default <data_dir>/reports
    series_max_points: int = Field(default=2000, ge=100)  # per quantity on a site's chart: thinned beyond this
    # Printed with the console's address at start and shown on the login page: for a demo's public account
    # only (a real deployment leaves it empty; its passwords are never in the configuration).
    login_hint: str = ""
