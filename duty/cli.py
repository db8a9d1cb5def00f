"""The duty office on the command line: every command is a request to the running daemon's API.

    export YUJING_TOKEN=…                     # or YUJING_TOKEN_FILE=/path, or YUJING_USER + YUJING_PASSWORD
    yujing warnings                           # what is in force, with its confirmation status
    yujing warn issue --hazard landslide --level orange --area shibao.gonghe --text "立即转移" --for 6h
    yujing warn update KEY --level red        yujing warn lift KEY
    yujing confirm KEY +8613900000001 --via landline --note "电话确认"
    yujing silence add --site LS-01 --for 2h --reason "监测仪维护"    yujing silence list    yujing silence remove ID

``--url`` (or ``YUJING_URL``; default http://127.0.0.1:8090) names the daemon. Nothing here opens a database:
the daemon authenticates, authorises and audits every request. Exit 0 done, 1 refused (with the reason),
2 cannot reach the daemon or bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8090"


class Client:
    def __init__(self, url: str, ca_file: str | None = None) -> None:
        self.url = url.rstrip("/")
        ctx = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()),
                                                  urllib.request.HTTPSHandler(context=ctx))
        self.headers: dict[str, str] = {}

    def authenticate(self) -> None:
        token = os.environ.get("YUJING_TOKEN")
        if not token and os.environ.get("YUJING_TOKEN_FILE"):
            token = Path(os.environ["YUJING_TOKEN_FILE"]).read_text(encoding="utf-8").strip()
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
            return
        user, password = os.environ.get("YUJING_USER"), os.environ.get("YUJING_PASSWORD")
        if user and password:
            status, body = self.call("POST", "/api/v1/login", {"username": user, "password": password})
            if status != 200:
                raise Refused(status, body)
            self.headers["X-CSRF-Token"] = body["csrf"]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={**self.headers, "Content-Type": "application/json"})
        try:
            with self.opener.open(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                return exc.code, {"error": str(exc.code), "detail": exc.reason}


class Refused(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status} {body.get('error', '')}: {body.get('detail', '')}")


def _duration(text: str) -> timedelta:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not m:
        raise argparse.ArgumentTypeError("a duration like 30m, 6h, 2d")
    return timedelta(seconds=float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]])


def _when(args: argparse.Namespace, at: str = "expires", span: str = "for_") -> str | None:
    if getattr(args, span, None) is not None:
        return (datetime.now(UTC) + getattr(args, span)).isoformat()
    value = getattr(args, at, None)
    if value is None:
        return None
    t = datetime.fromisoformat(value)
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat()


def _expiry(args: argparse.Namespace) -> dict[str, Any]:
    """--for as a duration the daemon adds to its own clock (a drill's runs faster than the wall's)."""
    if getattr(args, "for_", None) is not None:
        return {"expires_in_s": args.for_.total_seconds()}
    exp = _when(args)
    return {"expires": exp} if exp is not None else {}


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    q = urllib.parse.quote
    if args.cmd == "warnings":
        return "GET", "/api/v1/warnings", None
    if args.cmd == "warn":
        if args.what == "issue":
            body = {"hazard": args.hazard, "level": args.level, "site": args.site or "", "area": args.area or "",
                    "title": args.title, "text": args.text, "drill": args.drill}
            body.update(_expiry(args))
            return "POST", "/api/v1/warnings", body
        if args.what == "update":
            body = {k: v for k, v in (("level", args.level), ("text", args.text)) if v is not None}
            body.update(_expiry(args))
            return "POST", f"/api/v1/warnings/{q(args.key, safe='')}/update", body
        return "POST", f"/api/v1/warnings/{q(args.key, safe='')}/{args.what}", {}
    if args.cmd == "confirm":
        return "POST", "/api/v1/confirm", {"key": args.key, "phone": args.phone, "via": args.via, "note": args.note}
    if args.what == "list":
        return "GET", "/api/v1/silences", None
    if args.what == "remove":
        return "DELETE", f"/api/v1/silences/{q(args.id, safe='')}", None
    body = {"site": args.site or "", "area": args.area or "", "reason": args.reason}
    if args.for_ is not None:
        body["for_s"] = args.for_.total_seconds()
    elif args.until:
        body["until"] = _when(args, "until")
    if args.hazard:
        body["hazard"] = args.hazard
    return "POST", "/api/v1/silences", body


def _show(args: argparse.Namespace, body: Any) -> None:
    if args.json or args.cmd not in ("warnings",) and not (args.cmd == "silence" and args.what == "list"):
        print(json.dumps(body, ensure_ascii=False, indent=2))
        return
    if args.cmd == "warnings":
        if not body["warnings"]:
            print("no warning in force")
        for w in body["warnings"]:
            p = w["progress"]
            print(f"{w['level']:<6} {w['state']:<10} {w['key']}  {w['source']}  {w['title']}")
            print(f"       told {p['told']}, delivered {p['delivered']}, failed {p['failed']}, "
                  f"confirmed {p['confirmed']}, escalated {p['escalated']} (told by escalation {p['by_escalation']}), "
                  f"unconfirmed {len(p['unconfirmed'])}")
            for u in p["unconfirmed"]:
                print(f"         not confirmed: {u['name']} ({u['tier']}, {u['node']}) {u['phone']}")
        return
    for s in body["silences"]:
        print(f"{s['id']}  {s['site'] or s['area']}  {s['hazard'] or '*'}  until {s['until']}  {s['reason']}")


def run(args: argparse.Namespace) -> int:
    client = Client(args.url or os.environ.get("YUJING_URL") or DEFAULT_URL, args.ca_file)
    try:
        client.authenticate()
        method, path, body = _request(args)
        status, answer = client.call(method, path, body)
    except Refused as exc:
        print(f"yujing: refused: {exc}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"yujing: cannot reach the duty office at {client.url}: {exc}", file=sys.stderr)
        return 2
    if status >= 400:
        print(f"yujing: refused ({status} {answer.get('error', '')}): {answer.get('detail', '')}", file=sys.stderr)
        return 1
    _show(args, answer)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``warn``, ``warnings``, ``confirm`` and ``silence`` to the ``yujing`` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the duty office (default $YUJING_URL or {DEFAULT_URL})")
    common.add_argument("--ca-file", help="CA certificate of an https duty office")
    common.add_argument("--json", action="store_true", help="print the API's JSON")

    w = sub.add_parser("warnings", parents=[common], help="warnings in force with their confirmation status")
    w.set_defaults(duty_command=run)

    warn = sub.add_parser("warn", help="issue, update or lift a warning from the duty office")
    ws = warn.add_subparsers(dest="what", required=True)
    i = ws.add_parser("issue", parents=[common])
    i.add_argument("--hazard", required=True)
    i.add_argument("--level", required=True, choices=["blue", "yellow", "orange", "red"])
    where = i.add_mutually_exclusive_group(required=True)
    where.add_argument("--site")
    where.add_argument("--area")
    i.add_argument("--title", default="")
    i.add_argument("--text", default="", help="the instruction people read (e.g. 立即转移)")
    i.add_argument("--expires", help="ISO-8601 time (UTC unless it says otherwise)")
    i.add_argument("--for", dest="for_", type=_duration, help="or: a duration, e.g. 6h")
    i.add_argument("--drill", action="store_true", help="a drill: only drill recipients, marked 【演练】")
    u = ws.add_parser("update", parents=[common])
    u.add_argument("key")
    u.add_argument("--level", choices=["blue", "yellow", "orange", "red"])
    u.add_argument("--text")
    u.add_argument("--expires")
    u.add_argument("--for", dest="for_", type=_duration)
    for name in ("lift", "resend"):
        x = ws.add_parser(name, parents=[common])
        x.add_argument("key")
    warn.set_defaults(duty_command=run)

    c = sub.add_parser("confirm", parents=[common], help="confirm on a person's behalf (e.g. by landline)")
    c.add_argument("key")
    c.add_argument("phone")
    c.add_argument("--via", default="landline")
    c.add_argument("--note", default="")
    c.set_defaults(duty_command=run)

    s = sub.add_parser("silence", help="maintenance windows: add, list, remove")
    ss = s.add_subparsers(dest="what", required=True)
    a = ss.add_parser("add", parents=[common])
    place = a.add_mutually_exclusive_group(required=True)
    place.add_argument("--site")
    place.add_argument("--area")
    a.add_argument("--hazard")
    a.add_argument("--until")
    a.add_argument("--for", dest="for_", type=_duration)
    a.add_argument("--reason", required=True)
    ss.add_parser("list", parents=[common])
    r = ss.add_parser("remove", parents=[common])
    r.add_argument("id")
    s.set_defaults(duty_command=run)
