"""The duty office's web console (值班台): the county on one screen, live. See console/README.md.

    console.install(app, office, rt)   # add the pages to the aiohttp application that serves the duty API

The console's read model (console/live.py) and the store it reads series from live as long as ``app``
runs: they start with it and stop with it (an aiohttp cleanup context).
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator


def announce(app: Any, url: str) -> None:
    """Print where the console is (and the demo's login, if the configuration gives one), once it listens."""
    from console.web import announce as say

    say(app, url)


def install(app: Any, office: Any = None, rt: Any = None) -> None:
    """Add the console to ``app`` (an aiohttp Application); ``rt`` is the running daemon's Runtime.

    ``office`` is the duty office (duty/api.py) whose accounts and sessions guard the pages, or None.
    """
    from collector.stores import open_store
    from console.live import Live
    from console.web import install as add_routes  # aiohttp and Jinja2 only when a console is served

    if rt is None:
        raise TypeError("console.install needs the daemon's Runtime (its configuration, clock and stop)")
    live = Live(rt.config, rt.clock)

    async def lifetime(_app: Any) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            store = None
            if rt.config.collector.store is not None:
                store = await stack.enter_async_context(open_store(rt.config.collector.store, rt.config))
            served.store = store
            await stack.enter_async_context(live.running(rt.stop))
            yield

    async def end_streams(_app: Any) -> None:
        live.close_listeners()  # open event streams end, so the server's shutdown does not wait on them

    served = add_routes(app, live, store=None, office=office)
    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(end_streams)
