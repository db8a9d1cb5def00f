"""The duty office's JSON API under ``/api/v1/`` (the contract the console is built on: README of duty/).

Every request is identified (bearer token or session cookie) by one middleware, which also checks CSRF on
cookie writes and writes every write — allowed, refused, or failed inside — to the audit log before answering.
Every refusal is counted by its code (``yujing_duty_refused_total{reason}``) and logged once a minute per code.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable

from aiohttp import web
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alerts.commands import Action, Command
from alerts.config import Silence
from duty.audit import AuditLog
from duty.auth import COOKIE, CSRF_HEADER, Identity, Sessions
from duty.config import DutyConfig, Role
from duty.issuer import Issue, IssueError, Issuer
from duty.progress import Progress
from duty.publisher import IssuerLink
from duty.silences import Silences
from duty.throttle import LoginThrottle
from yujing import topics
from yujing.log import Limiter
from yujing.model import AwareUTC, Hazard, HazardWarning, Level, WarningState

log = logging.getLogger("yujing.duty")
REFUSED = Counter("yujing_duty_refused_total", "Duty office API requests refused, by error code "
                  "(unauthenticated, forbidden, csrf, bad-credentials, too-many-attempts, internal-error, ...)",
                  ["reason"])
_limiter = Limiter(60.0)
WRITE = ("POST", "PUT", "PATCH", "DELETE")
PUBLIC = ("/api/v1/login",)


@dataclass
class Office:
    """The live parts the handlers use."""

    cfg: DutyConfig
    issuer: Issuer
    link: IssuerLink
    audit: AuditLog
    sessions: Sessions
    progress: Progress
    silences: Silences
    now: Callable[[], datetime]
    prefix: str
    throttle: LoginThrottle  # failed logins per user name and per address: no guessing at argon2's pace
    tls: bool = False


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IssueIn(_In):
    hazard: Hazard
    level: Level
    site: str = ""
    area: str = ""
    title: str = Field(default="", max_length=200)
    text: str = Field(default="", max_length=2000)
    headline: str = Field(default="", max_length=200)
    expires: AwareUTC | None = None
    expires_in_s: float | None = Field(default=None, gt=0)  # or: from now on the daemon's clock (drills run faster)
    drill: bool = False


class UpdateIn(_In):
    level: Level | None = None
    text: str | None = Field(default=None, max_length=2000)
    headline: str | None = Field(default=None, max_length=200)
    expires: AwareUTC | None = None
    expires_in_s: float | None = Field(default=None, gt=0)


class ConfirmIn(_In):
    key: str = Field(min_length=1)
    phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$")
    via: str = Field(default="landline", max_length=40)
    note: str = Field(default="", max_length=500)


class SilenceIn(_In):
    site: str = ""
    area: str = ""
    hazard: Hazard | None = None
    until: AwareUTC | None = None
    for_s: float | None = Field(default=None, gt=0)  # or: from now on the daemon's clock
    reason: str = Field(min_length=1, max_length=500)


class LoginIn(_In):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.status, self.code, self.detail = status, code, detail


def _one_place(site: str, area: str) -> None:
    """A warning or a silence is over one site or one area: never both, never neither."""
    if bool(site) == bool(area):
        raise ApiError(400, "bad-request", "give exactly one of site or area")


def _error(status: int, code: str, detail: str = "") -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        raw = await request.read()
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(400, "bad-request", f"{where}: {first['msg']}") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OFFICE: web.AppKey[Office] = web.AppKey("office", Office)
WHO: web.RequestKey[Identity | None] = web.RequestKey("identity", object)  # type: ignore[arg-type]
AUDIT: web.RequestKey[dict[str, Any]] = web.RequestKey("audit", dict)
NEEDS = "yujing_needs"  # handler attribute: the role a route needs


def needs(role: Role) -> Callable[[Handler], Handler]:
    def mark(handler: Handler) -> Handler:
        setattr(handler, NEEDS, role)
        return handler
    return mark


@web.middleware
async def _gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    office = request.app[OFFICE]
    if not request.path.startswith("/api/"):
        return await handler(request)
    write = request.method in WRITE
    who = office.sessions.identify(request.headers.get("Authorization", ""), request.cookies.get(COOKIE, ""))
    request[WHO] = who
    request[AUDIT] = {"target": request.match_info.get("key", request.match_info.get("id", "")), "detail": {}}
    response: web.StreamResponse
    try:
        if request.path not in PUBLIC:
            if who is None:
                raise ApiError(401, "unauthenticated", "log in, or send Authorization: Bearer <token>")
            if write and not Sessions.csrf_ok(who, request.headers.get(CSRF_HEADER, "")):
                raise ApiError(403, "csrf", f"a write made with the session cookie needs the {CSRF_HEADER} header")
            role = getattr(handler, NEEDS, Role.VIEWER)
            if not who.role.allows(role):
                raise ApiError(403, "forbidden", f"{who.user} is a {who.role.value}; this needs {role.value}")
        response = await handler(request)
    except ApiError as exc:
        response = _error(exc.status, exc.code, exc.detail)
    except IssueError as exc:
        response = _error(404 if exc.code == "not-found" else 409 if exc.code == "lifted" else 422, exc.code,
                          exc.detail)
    except web.HTTPException as exc:  # aiohttp's own refusals (a body over client_max_size…): audited too
        response = _error(exc.status, exc.reason.lower().replace(" ", "-"), exc.text or "")
    except Exception:  # noqa: BLE001 — a write that failed inside (a database refusing) is answered and audited
        log.exception("duty office request failed", extra={"kv": {"action": f"{request.method} {request.path}"}})
        response = _error(500, "internal-error", "the duty office could not complete this; see its log")
    who = request.get(WHO)
    result = "ok" if response.status < 400 else _code(response)
    if response.status >= 400:
        REFUSED.labels(result).inc()
        if _limiter.allow(result):
            log.warning("duty office request refused", extra={"kv": {
                "reason": result, "status": response.status, "action": f"{request.method} {request.path}",
                "user": who.user if who else request[AUDIT].get("user", ""), "remote": request.remote or "",
                "suppressed": _limiter.take_suppressed(result)}})
    if write:
        office.audit.record(office.now(), user=who.user if who else request[AUDIT].get("user", ""),
                            role=who.role.value if who else "", remote=request.remote or "",
                            action=f"{request.method} {request.path}", target=request[AUDIT]["target"],
                            result=result, status=response.status, detail=request[AUDIT]["detail"])
    return response


def _code(response: web.StreamResponse) -> str:
    try:
        return str(json.loads(response.body)["error"])  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        return str(response.status)


# ---- session ---------------------------------------------------------------------------------------
async def login(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    body: LoginIn = await _body(request, LoginIn)
    request[AUDIT]["user"] = body.username
    throttle, remote = office.throttle, request.remote or ""
    if throttle.blocked(body.username, remote):
        raise ApiError(429, "too-many-attempts", f"too many failed logins; try again in {throttle.window_s:.0f} s")
    who = office.sessions.login(body.username, body.password)
    if who is None:
        throttle.failed(body.username, remote)
        raise ApiError(401, "bad-credentials", "wrong user name or password")
    request[WHO] = who
    resp = web.json_response({"user": who.user, "role": who.role.value, "csrf": who.csrf})
    resp.set_cookie(COOKIE, who.session, httponly=True, samesite="Strict", secure=office.tls, path="/",
                    max_age=int(office.cfg.session_ttl_s))
    return resp


async def logout(request: web.Request) -> web.Response:
    who: Identity = request[WHO]
    request.app[OFFICE].sessions.logout(who.session)
    resp = web.json_response({"ok": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


async def me(request: web.Request) -> web.Response:
    who: Identity = request[WHO]
    return web.json_response({"user": who.user, "role": who.role.value, "csrf": who.csrf})


# ---- warnings ----------------------------------------------------------------------------------------
def _all(office: Office) -> dict[str, HazardWarning]:
    seen = office.progress.warnings()  # what alerts has; the issuer may be a version ahead of it
    ahead = [x for k, w in seen.items() if w.from_above and (x := office.issuer.get(k)) is not None]
    for w in office.issuer.in_force() + ahead:
        if w.key not in seen or seen[w.key].version < w.version:
            seen[w.key] = w
    return seen


def _view(office: Office, w: HazardWarning) -> dict[str, Any]:
    return {"key": w.key, "version": w.version, "hazard": w.hazard.value, "level": w.level.value,
            "state": w.state.value, "site": w.site, "area": w.area, "title": w.title or w.headline,
            "evidence": w.evidence, "source": w.source, "issued_at": w.issued_at.isoformat(),
            "updated_at": w.updated_at.isoformat(), "drill": w.drill, "sender_name": w.sender_name,
            "instruction": w.instruction, "expires": w.expires.isoformat() if w.expires else None,
            "progress": office.progress.summary(w.key)}


async def list_warnings(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    ws = [w for w in _all(office).values() if w.state is not WarningState.LIFTED]
    ws.sort(key=lambda w: (-w.level.severity, w.updated_at), reverse=False)
    return web.json_response({"warnings": [_view(office, w) for w in ws]})


async def one_warning(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    key = request.match_info["key"]
    w = _all(office).get(key) or office.issuer.get(key)
    if w is None:
        raise ApiError(404, "not-found", f"no warning {key!r}")
    history = office.progress.history(key)
    if not history:
        history = [{"version": v.version, "state": v.state.value, "level": v.level.value,
                    "at": v.updated_at.isoformat()} for v in office.issuer.history(key)]
    return web.json_response({**_view(office, w), "history": history,
                              "notifications": office.progress.notifications(key)})


@needs(Role.OPERATOR)
async def issue(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    who: Identity = request[WHO]
    body: IssueIn = await _body(request, IssueIn)
    request[AUDIT]["detail"] = body.model_dump(mode="json")
    _one_place(body.site, body.area)
    expires = body.expires or office.now() + timedelta(seconds=body.expires_in_s or office.cfg.default_expiry_s)
    if expires <= office.now():
        raise ApiError(422, "expired", "expires is in the past")
    w, _ = office.issuer.issue(Issue(
        hazard=body.hazard, level=body.level, source=f"operator:{who.user}", site=body.site, area=body.area,
        title=body.title, instruction=body.text, headline=body.headline, sender_name=office.cfg.sender_name,
        expires=expires, drill=body.drill))
    request[AUDIT]["target"] = w.key
    office.link.poke()
    return web.json_response({"key": w.key, "version": w.version}, status=201)


@needs(Role.OPERATOR)
async def update(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    body: UpdateIn = await _body(request, UpdateIn)
    request[AUDIT]["detail"] = body.model_dump(mode="json", exclude_none=True)
    expires = body.expires or (office.now() + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None)
    w, _ = office.issuer.update(request.match_info["key"], level=body.level, instruction=body.text,
                                headline=body.headline, expires=expires)
    office.link.poke()
    return web.json_response({"key": w.key, "version": w.version, "state": w.state.value})


@needs(Role.OPERATOR)
async def lift(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    w, _ = office.issuer.lift(request.match_info["key"])
    office.link.poke()
    return web.json_response({"key": w.key, "version": w.version, "state": w.state.value})


def _command(request: web.Request, action: Action, **kw: Any) -> web.Response:
    office = request.app[OFFICE]
    who: Identity = request[WHO]
    key = kw.pop("key", request.match_info.get("key", ""))
    if key not in _all(office):
        raise ApiError(404, "not-found", f"no warning {key!r}")
    cmd = Command(action=action, key=key, by=f"operator:{who.user}", id=secrets.token_hex(6), **kw)
    office.link.send(topics.commands(office.prefix), cmd.model_dump_json().encode())
    request[AUDIT]["target"] = key
    return web.json_response({"accepted": True, "id": cmd.id}, status=202)


@needs(Role.OPERATOR)
async def resend(request: web.Request) -> web.Response:
    return _command(request, Action.RESEND)


@needs(Role.OPERATOR)
async def confirm(request: web.Request) -> web.Response:
    body: ConfirmIn = await _body(request, ConfirmIn)
    request[AUDIT]["detail"] = body.model_dump(mode="json")
    return _command(request, Action.CONFIRM, key=body.key, phone=body.phone, via=body.via, note=body.note)


# ---- silences, audit ---------------------------------------------------------------------------------
async def list_silences(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    return web.json_response({"silences": [_silence(s) for s in office.silences.all(office.now())]})


def _silence(s: Silence) -> dict[str, Any]:
    return {"id": s.id, "site": s.site or "", "area": s.area or "", "hazard": s.hazard.value if s.hazard else None,
            "from": s.starts.isoformat(), "until": s.ends.isoformat(), "reason": s.comment}


@needs(Role.OPERATOR)
async def add_silence(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    who: Identity = request[WHO]
    body: SilenceIn = await _body(request, SilenceIn)
    request[AUDIT]["detail"] = body.model_dump(mode="json")
    _one_place(body.site, body.area)
    try:
        office.issuer.check_place(body.site, body.area)
    except IssueError as exc:
        raise ApiError(422, exc.code, exc.detail) from None
    until = body.until or (office.now() + timedelta(seconds=body.for_s) if body.for_s else None)
    if until is None:
        raise ApiError(400, "bad-request", "give until or for_s")
    if until <= office.now():
        raise ApiError(422, "expired", "until is in the past")
    s = office.silences.add(Silence(site=body.site or None, area=body.area or None, hazard=body.hazard,
                                    starts=office.now(), ends=until, comment=f"{body.reason} ({who.user})"),
                            by=who.user)
    request[AUDIT]["target"] = s.id
    office.link.send(topics.silences(office.prefix), office.silences.as_message(office.now()), retain=True)
    return web.json_response(_silence(s), status=201)


@needs(Role.OPERATOR)
async def remove_silence(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    if not office.silences.remove(request.match_info["id"]):
        raise ApiError(404, "not-found", f"no silence {request.match_info['id']!r}")
    office.link.send(topics.silences(office.prefix), office.silences.as_message(office.now()), retain=True)
    return web.json_response({"ok": True})


def query_limit(request: web.Request, default: int = 100, most: int = 1000) -> int:
    """``?limit=N`` of a listing, held to 1..``most``; anything but a whole number is a 400."""
    try:
        return max(1, min(most, int(request.query.get("limit", str(default)))))
    except ValueError:
        raise ApiError(400, "bad-request", "limit: a whole number") from None


@needs(Role.ADMIN)
async def audit(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    return web.json_response({"entries": [e.as_json() for e in office.audit.entries(query_limit(request))]})


def make_app(office: Office) -> web.Application:
    """The aiohttp application of the API; the console adds its pages to it (``console.install(app, …)``)."""
    app = web.Application(middlewares=[_gate], client_max_size=64 * 1024)
    app[OFFICE] = office
    r = app.router
    r.add_post("/api/v1/login", login)
    r.add_post("/api/v1/logout", logout)
    r.add_get("/api/v1/me", me)
    r.add_get("/api/v1/warnings", list_warnings)
    r.add_post("/api/v1/warnings", issue)
    r.add_get("/api/v1/warnings/{key}", one_warning)
    r.add_post("/api/v1/warnings/{key}/update", update)
    r.add_post("/api/v1/warnings/{key}/lift", lift)
    r.add_post("/api/v1/warnings/{key}/resend", resend)
    r.add_post("/api/v1/confirm", confirm)
    r.add_get("/api/v1/silences", list_silences)
    r.add_post("/api/v1/silences", add_silence)
    r.add_delete("/api/v1/silences/{id}", remove_silence)
    r.add_get("/api/v1/audit", audit)
    return app
