"""The duty office as a part: the JSON API (and the console's pages, when installed), the issuer of warnings
from above and its link to the bus.

    await serve(rt)      # until rt.stop; `yujing run CONFIG` starts it with the rest, `yujing duty CONFIG` alone

It listens on ``duty.host:duty.port`` (127.0.0.1:8090 by default) and refuses a non-loopback host unless TLS
is configured (the config already refuses it; the bind checks again, so no code path can skip it).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import ssl
import sys
from typing import Any

from aiohttp import web

from duty.accounts import Accounts
from duty.api import Office, make_app
from duty.audit import AuditLog
from duty.auth import Sessions
from duty.config import is_loopback
from duty.issuer import Issuer
from duty.progress import Progress
from duty.publisher import IssuerLink
from duty.silences import Silences
from duty.throttle import LoginThrottle
from yujing import metrics, topics
from yujing.runtime import Runtime

log = logging.getLogger("yujing.duty")


class InsecureBind(RuntimeError):
    pass


def _tls(rt: Runtime) -> ssl.SSLContext | None:
    tls = rt.config.duty.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(rt.config.path(str(tls.cert_file), "")), str(rt.config.path(str(tls.key_file), "")))
    return ctx


async def serve(rt: Runtime, *, ready: asyncio.Event | None = None, state: dict[str, Any] | None = None) -> None:
    cfg = rt.config.duty
    tls = _tls(rt)
    if tls is None and not is_loopback(cfg.host):
        raise InsecureBind(f"duty: refusing to listen on {cfg.host} without TLS")
    alerts = rt.config.alerts
    with contextlib.ExitStack() as files:
        issuer = Issuer(rt.config.path(cfg.state, "duty-issued.sqlite"), rt.config, rt.clock.now)
        files.callback(issuer.close)
        audit = AuditLog(rt.config.path(cfg.audit_log, "duty-audit.sqlite"))
        files.callback(audit.close)
        silences = Silences(rt.config.path("", "duty-silences.sqlite"))
        files.callback(silences.close)
        link = IssuerLink(rt, issuer, cfg.client_id)
        prefix = rt.config.mqtt.topic_prefix
        link.send(topics.silences(prefix), silences.as_message(rt.clock.now()), retain=True)
        office = Office(cfg=cfg, issuer=issuer, link=link, audit=audit, sessions=Sessions(Accounts(cfg), cfg.session_ttl_s),
                        progress=Progress(rt.config.path(alerts.log, "alerts.sqlite"),
                                          rt.config.path(alerts.drill.log, "alerts-drill.sqlite")),
                        silences=silences, now=rt.clock.now, prefix=prefix, tls=tls is not None,
                        throttle=LoginThrottle((a.user for a in cfg.accounts), max_keys=cfg.login_max_tracked))
        app = make_app(office)
        pollers = []
        if rt.config.upstream.sources:  # CAP 1.2 from upper-level platforms: POST, feeds, MQTT
            from upstream.service import install

            pollers = install(app, rt, issuer, link)
        _install_console(app, office, rt)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()

        def health() -> dict[str, object]:
            up = link.connected.is_set()
            return {"ok": up, "part": "duty", "connected": up, "unpublished": len(issuer.unpublished())}

        try:
            async with metrics.serving(cfg.metrics_host, cfg.metrics_port, health):
                site = web.TCPSite(runner, cfg.host, cfg.port, ssl_context=tls)
                await site.start()
                port = runner.addresses[0][1]
                url = f"{'https' if tls else 'http'}://{cfg.host}:{port}"
                log.info("duty office listening", extra={"kv": {"url": url, "accounts": len(cfg.accounts)}})
                _announce_console(app, url)
                if state is not None:
                    state.update(office=office, url=url, app=app)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(link.run())
                    for p in pollers:
                        tg.create_task(p)
                    if ready is not None:
                        tg.create_task(_ready_when(link, ready))
                    await rt.stop.wait()
        finally:
            await runner.cleanup()


async def _ready_when(link: IssuerLink, ready: asyncio.Event) -> None:
    await link.connected.wait()
    ready.set()


def _install_console(app: web.Application, office: Office, rt: Runtime) -> None:
    """The web console (package ``console``, when installed) adds its pages to the same application."""
    try:
        console = importlib.import_module("console")
    except ImportError:
        return
    install = getattr(console, "install", None)
    if install is not None:
        install(app, office, rt)


def _announce_console(app: web.Application, url: str) -> None:
    """Say where the console is, once it listens (the README's first command shows this line)."""
    announce = getattr(importlib.import_module("console"), "announce", None) if "console" in sys.modules else None
    if announce is not None:
        announce(app, url)
