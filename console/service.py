"""The console as a running part: ``yujing console CONFIG`` alone, or beside the others in ``yujing run``.

It serves one aiohttp application on ``console.host:console.port`` (loopback unless TLS is configured,
see console/config.py) until stop.
"""

from __future__ import annotations

import logging
import ssl
import sys

from aiohttp import web

from console import install
from console.config import ConsoleConfig
from yujing.runtime import Runtime

log = logging.getLogger("yujing.console")


def make_app(rt: Runtime) -> web.Application:
    """The console's own application, until the duty office's API (which will host it) is in place."""
    app = web.Application()
    install(app, None, rt)
    return app


def _tls(cfg: ConsoleConfig) -> ssl.SSLContext | None:
    if cfg.tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cfg.tls.cert_file, cfg.tls.key_file)
    return ctx


def address(cfg: ConsoleConfig, port: int) -> str:
    return f"{'https' if cfg.tls else 'http'}://{cfg.host}:{port}/"


async def serve(rt: Runtime) -> None:
    cfg = rt.config.console or ConsoleConfig()
    runner = web.AppRunner(make_app(rt), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, cfg.host, cfg.port, ssl_context=_tls(cfg))
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else cfg.port
        url = address(cfg, port)
        log.info("console listening", extra={"kv": {"url": url}})
        print(f"控制台 console: {url}", file=sys.stderr, flush=True)
        await rt.stop.wait()
    finally:
        await runner.cleanup()
