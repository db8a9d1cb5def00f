"""The console's pages and its JSON, added to the one aiohttp application that also serves the duty API.

Pages are Jinja2 templates drawn once; the script on each page fetches its JSON and keeps it current from
``/console/events`` (server-sent events). Static files (the map and chart libraries, with their licences)
are under ``/static/``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from collector.stores.base import Store
from console import drills, i18n
from console.board import warning_json
from console.live import Live
from console.series import chart, window
from yujing.config import Tier
from yujing.errors import StoreError
from yujing.model import Hazard, Level

log = logging.getLogger("yujing.console")

HERE = Path(__file__).resolve().parent


@dataclass
class Served:
    """What the handlers read: the read model, the store (opened when the application starts), the office."""

    live: Live
    jinja: jinja2.Environment
    store: Store | None = None
    office: Any = None  # duty.api.Office: accounts and sessions; None before the duty office is configured
    guarded: frozenset[Any] = frozenset()  # the console's own routes: the only ones its login guard answers for


CONSOLE: web.AppKey[Served] = web.AppKey("console", Served)
COOKIE = "yujing_session"  # the duty office's session cookie (duty/auth.py)
OPEN = ("/login", "/static/", "/favicon.ico")  # what a browser may fetch before logging in


def announce(app: web.Application, url: str) -> None:
    served = app.get(CONSOLE)
    if served is None:
        return
    hint = served.live.config.console.login_hint
    print(f"控制台 console: {url.rstrip('/')}/" + (f"  登录 login: {hint}" if hint else ""), file=sys.stderr, flush=True)


def identify(request: web.Request) -> Any:
    """The duty office's identity of the request (session cookie or bearer token), or None."""
    office = request.app[CONSOLE].office
    if office is None:
        return None
    return office.sessions.identify(request.headers.get("Authorization", ""), request.cookies.get(COOKIE, ""))


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every page and every piece of console JSON needs a logged-in user (phones and names are personal data)."""
    served = request.app[CONSOLE]
    path = request.path
    # the same application serves the duty office's API and the CAP intake (POST /cap/{source}), each with its
    # own authentication (bearer token, HMAC): a login redirect there would turn a platform's POST into a page.
    # The console's own API routes (/api/v1/drills) are answered by the duty office's gate, as the others are
    if (served.office is None or request.match_info.route not in served.guarded or path.startswith("/api/")
            or path.startswith(OPEN)):
        return await handler(request)
    who = identify(request)
    if who is None:
        if path.startswith("/console/"):
            return web.json_response({"error": "unauthenticated", "detail": "log in first"}, status=401)
        raise web.HTTPFound("/login?" + urlencode({"next": request.path_qs}))
    request["console_who"] = who
    return await handler(request)
KEEPALIVE_S = 15.0  # a comment line on an idle stream, so proxies and the browser keep it open


def install(app: web.Application, live: Live, store: Store | None = None, office: Any = None) -> Served:
    """Add the console's pages, JSON, event stream and static files to ``app``; returns what they read."""
    served = Served(live, jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                             autoescape=jinja2.select_autoescape(["html"])), store, office)
    app[CONSOLE] = served
    app.middlewares.append(_guard)
    r = app.router
    before = set(r.routes())
    r.add_get("/", page("map.html"))
    r.add_get("/warnings", page("warnings.html"))
    r.add_get("/warnings/{key}", warning_page)
    r.add_get("/sites/{site}", site_page)
    r.add_get("/equipment", page("equipment.html"))
    r.add_get("/drills", drills_page)
    r.add_get("/audit", page("audit.html"))
    r.add_get("/login", login_page)
    r.add_get("/console/state.json", state_json)
    r.add_get("/console/warnings/{key}.json", warning_json_handler)
    r.add_get("/console/sites/{site}/series.json", series_json)
    r.add_get("/console/equipment.json", equipment_json)
    r.add_get("/console/boundaries.geojson", boundaries)
    r.add_get("/console/events", events)
    r.add_get("/console/reports/{run}/{file:.+}", report_file)
    r.add_get("/console/drills.json", drills_json)
    drills.install(app, live.config, _reports_dir(live))
    r.add_get("/favicon.ico", _no_content)
    r.add_static("/static/", HERE / "static", append_version=False)
    served.guarded = frozenset(set(r.routes()) - before)
    return served


async def _no_content(_request: web.Request) -> web.Response:
    return web.Response(status=204)


# ---- pages ------------------------------------------------------------------------------------
def _lang(request: web.Request) -> i18n.Language:
    live = request.app[CONSOLE].live
    return i18n.pick(request.query.get("lang"), request.cookies.get("yujing_lang"), live.config.console.language)


def render(request: web.Request, name: str, **ctx: Any) -> web.Response:
    live = request.app[CONSOLE].live
    lang = _lang(request)
    words = i18n.table(lang)
    cfg = live.config
    townships = [(a.id, a.name) for a in cfg.areas if a.tier is Tier.TOWNSHIP]
    html = request.app[CONSOLE].jinja.get_template(name).render(
        t=words, words_json=json.dumps(words, ensure_ascii=False), lang=lang.value,
        other_lang="en" if lang is i18n.Language.ZH else "zh", deployment=cfg.deployment.name,
        townships=townships, hazards=[h.value for h in Hazard if h is not Hazard.EQUIPMENT],
        levels=[lv.value for lv in Level], path=request.path, me=_me(request), login_hint=cfg.console.login_hint,
        villages=[(a.id, a.name, _township(live, a.id)) for a in cfg.areas if a.tier is Tier.VILLAGE],
        map_cfg=json.dumps({"tiles": cfg.console.tiles, "attribution": cfg.console.tiles_attribution,
                            "boundaries": bool(cfg.console.boundaries)}), **ctx)
    resp = web.Response(text=html, content_type="text/html")
    resp.headers["Cache-Control"] = "no-store"  # a page carries its user's CSRF token
    if request.query.get("lang") in ("zh", "en"):
        resp.set_cookie("yujing_lang", request.query["lang"], samesite="Strict", max_age=365 * 86400)
    resp.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data: *; "
                                               "style-src 'self' 'unsafe-inline'; script-src 'self'")
    return resp


def _me(request: web.Request) -> dict[str, Any] | None:
    who = request.get("console_who")
    if who is None:
        return None
    role = who.role.value
    return {"user": who.user, "role": role, "csrf": who.csrf, "can_write": role in ("operator", "admin"),
            "admin": role == "admin"}


def _township(live: Live, area: str) -> str:
    return next((a.id for a in live.config.lineage(area) if a.tier is Tier.TOWNSHIP), "")


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", next=_safe_next(request.query.get("next", "/")))


def _safe_next(target: str) -> str:
    """Only a path of this site: never an open redirect to another host."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def page(name: str):  # noqa: ANN201 -- an aiohttp handler
    async def handler(request: web.Request) -> web.Response:
        return render(request, name)
    return handler


async def warning_page(request: web.Request) -> web.Response:
    return render(request, "warning.html", key=request.match_info["key"])


async def site_page(request: web.Request) -> web.Response:
    live = request.app[CONSOLE].live
    sid = request.match_info["site"]
    info = live.board.sites.get(sid)
    if info is None:
        raise web.HTTPNotFound(text=f"no site {sid!r}")
    site = live.config.site(sid)
    return render(request, "site.html", site=site, info=info, area_names=_area_names(live, site.area))


def _area_names(live: Live, area: str) -> str:
    try:
        return " / ".join(a.name for a in reversed(live.config.lineage(area)))
    except KeyError:
        return area


async def drills_page(request: web.Request) -> web.Response:
    return render(request, "drills.html", reports=_reports(request.app[CONSOLE].live))


async def drills_json(request: web.Request) -> web.Response:
    """The scenarios an operator may drill, the drills this console started (running or ended), the reports."""
    d = request.app[drills.DRILLS]
    return web.json_response({"scenarios": d.scenarios(), "runs": [r.json() for r in reversed(d.runs.values())],
                              "reports": _reports(request.app[CONSOLE].live)})


def _reports_dir(live: Live) -> Path:
    return live.config.path(live.config.console.reports, "reports")


def _reports(live: Live) -> list[dict[str, Any]]:
    out = []
    root = _reports_dir(live)
    for path in sorted(root.glob("*/report.json"), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        exp = doc.get("expectations") or []
        scn = doc.get("scenario")
        passed = doc.get("passed", all(e.get("met") for e in exp) if exp else None)
        out.append({"run": path.parent.name,
                    "scenario": scn.get("name", path.parent.name) if isinstance(scn, dict) else str(scn or path.parent.name),
                    "started_at": str(doc.get("started_at") or ""), "figures": doc.get("figures") or {},
                    "passed": passed, "html": (path.parent / "report.html").exists()})
    return out


async def report_file(request: web.Request) -> web.FileResponse:
    live = request.app[CONSOLE].live
    root = _reports_dir(live).resolve()
    target = (root / request.match_info["run"] / request.match_info["file"]).resolve()
    if root not in target.parents or not target.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(target)


# ---- JSON -------------------------------------------------------------------------------------
async def state_json(request: web.Request) -> web.Response:
    """Everything the map and the lists start from; the event stream keeps it current."""
    live = request.app[CONSOLE].live
    b = live.board
    sites = [[s.id, s.name, s.kind, s.township, s.lat, s.lon] for s in b.sites.values()]
    states = {sid: st.as_json() for sid, st in b.states.items() if st.level or st.silent}
    warnings = [live.view(w) for w in b.in_force()]
    areas = {a.id: a.name for a in live.config.areas if a.tier in (Tier.TOWNSHIP, Tier.VILLAGE)}
    return web.json_response({"sites": sites, "states": states, "warnings": warnings, "areas": areas,
                              "connected": live.connected.is_set()}, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


async def warning_json_handler(request: web.Request) -> web.Response:
    live = request.app[CONSOLE].live
    key = request.match_info["key"]
    w = live.board.warnings.get(key) or live.chain.latest(key)
    if w is None:
        return web.json_response({"error": "not-found", "detail": f"no warning {key!r}"}, status=404)
    d = live.view(w)
    d["in_force"] = key in live.board.warnings
    d["history"] = live.chain.history(key)
    d["notifications"] = live.chain.notifications(key)
    d["area_name"] = _area_names(live, w.area) if w.area else ""
    return web.json_response(d, dumps=_dumps)


async def series_json(request: web.Request) -> web.Response:
    live = request.app[CONSOLE].live
    sid = request.match_info["site"]
    if sid not in live.board.sites:
        return web.json_response({"error": "not-found", "detail": f"no site {sid!r}"}, status=404)
    try:
        hours = int(request.query.get("hours", "24"))
    except ValueError:
        hours = 0
    if hours not in (24, 72):
        return web.json_response({"error": "bad-request", "detail": "hours is 24 or 72"}, status=400)
    store = request.app[CONSOLE].store
    since, until = window(live.clock.now(), hours)
    readings = []
    if store is not None:
        try:
            readings = [r for r in await store.readings(site=sid, since=since) if not r.drill]
        except StoreError as exc:
            return web.json_response({"error": "store", "detail": str(exc)}, status=503)
    site = live.config.site(sid)
    data = chart(live.config, site, readings, since=since, until=until, spans=live.chain.level_spans(sid),
                 max_points=live.config.console.series_max_points)
    return web.json_response(data, dumps=_dumps)


async def equipment_json(request: web.Request) -> web.Response:
    live = request.app[CONSOLE].live
    b = live.board
    return web.json_response({"gateways": b.gateway_rows(), "devices": b.device_rows(),
                              "warnings": [warning_json(w, live.tz) for w in b.equipment()]}, dumps=_dumps)


async def boundaries(request: web.Request) -> web.StreamResponse:
    live = request.app[CONSOLE].live
    name = live.config.console.boundaries
    if not name:
        raise web.HTTPNotFound()
    return web.FileResponse(live.config.path(name, ""), headers={"Content-Type": "application/geo+json"})


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``warning``, ``sites``, ``progress``, ``heartbeat`` as they happen."""
    live = request.app[CONSOLE].live
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    await resp.write(b"retry: 1000\nevent: hello\ndata: {}\n\n")
    with live.listen() as queue:
        try:
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        ev = await queue.get()
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if ev is None:
                    break
                await resp.write(ev.sse())
        except ConnectionResetError:
            pass  # the page went away
    return resp
