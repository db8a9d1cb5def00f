"""Who is asking: an API token (``Authorization: Bearer …``) or a session cookie from ``POST /api/v1/login``.

A session is a random id in an HttpOnly, SameSite=Strict cookie (Secure under TLS) with its own CSRF token:
every write made with the cookie must carry ``X-CSRF-Token``. A bearer token is not sent by browsers on
their own, so it needs none. Sessions live in memory: a restart logs everyone out, never in.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from duty.accounts import Accounts
from duty.config import Role

COOKIE = "yujing_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Identity:
    user: str
    role: Role
    csrf: str = ""  # '' for a bearer token
    session: str = ""

    @property
    def by_cookie(self) -> bool:
        return bool(self.session)


@dataclass
class _Session:
    identity: Identity
    expires: float


class Sessions:
    def __init__(self, accounts: Accounts, ttl_s: float) -> None:
        self.accounts = accounts
        self.ttl_s = ttl_s
        self._by_id: dict[str, _Session] = {}

    def login(self, user: str, password: str) -> Identity | None:
        account = self.accounts.check_password(user, password)
        if account is None:
            return None
        sid = secrets.token_urlsafe(32)
        identity = Identity(account.user, account.role, secrets.token_urlsafe(24), sid)
        self._by_id[sid] = _Session(identity, time.monotonic() + self.ttl_s)
        return identity

    def logout(self, sid: str) -> None:
        self._by_id.pop(sid, None)

    def identify(self, authorization: str, cookie: str) -> Identity | None:
        if authorization.lower().startswith("bearer "):
            account = self.accounts.check_token(authorization[7:].strip())
            return Identity(account.user, account.role) if account else None
        if cookie:
            s = self._by_id.get(cookie)
            if s is None:
                return None
            if s.expires < time.monotonic():
                del self._by_id[cookie]
                return None
            return s.identity
        return None

    @staticmethod
    def csrf_ok(identity: Identity, header: str) -> bool:
        return not identity.by_cookie or (bool(header) and secrets.compare_digest(header, identity.csrf))
