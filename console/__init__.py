"""The duty office's web console (值班台): the county on one screen, live. See console/README.md.

    console.install(app, live, store)   # add the pages to the aiohttp application that serves the duty API
"""

from __future__ import annotations

from typing import Any


def install(app: Any, live: Any, store: Any = None) -> None:
    """Add the console's pages, JSON, event stream and static files to ``app`` (an aiohttp Application)."""
    from console.web import install as _install  # aiohttp and Jinja2 only when a console is served

    _install(app, live, store)
