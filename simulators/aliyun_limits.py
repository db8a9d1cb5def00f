"""The Alibaba Cloud stand-in's rules: request signatures (ACS3-HMAC-SHA256) and the providers' frequency limits.

Plain functions and small classes with no server in them, so the stand-in stays short and a test can
check a limit without starting anything.

Signature: the SDK (``alibabacloud_tea_openapi``, v3 signing) sends
``Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<h1;h2…>,Signature=<hex>`` over the
canonical request ``METHOD\\nPATH\\nQUERY\\nHEADERS\\nSIGNED\\nsha256(body)``; we rebuild it from what arrived,
independently of the SDK's own code, so a mistake on either side shows.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"


def _canonical_query(query: dict[str, str]) -> str:
    return "&".join(f"{k}={quote(query[k], safe='~')}" for k in sorted(query))


def signature_error(method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes,
                    secrets: dict[str, str]) -> tuple[int, str, str] | None:
    """None if the request is signed by a known AccessKey, else (HTTP status, Alibaba Cloud code, message)."""
    auth = headers.get("authorization", "")
    if not auth.startswith(ALGORITHM + " "):
        return 400, "MissingAuthorization", "Authorization is mandatory for this action."
    parts = dict(p.strip().split("=", 1) for p in auth[len(ALGORITHM) + 1:].split(",") if "=" in p)
    key_id, signed, given = parts.get("Credential", ""), parts.get("SignedHeaders", ""), parts.get("Signature", "")
    secret = secrets.get(key_id)
    if secret is None:
        return 404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
    payload = hashlib.sha256(body).hexdigest()
    if headers.get("x-acs-content-sha256", "") != payload:
        return 400, "IncompleteSignature", "The request signature does not conform to Aliyun standards."
    names = signed.split(";") if signed else []
    if "host" not in names or "x-acs-date" not in names:
        return 400, "IncompleteSignature", "The request signature does not conform to Aliyun standards."
    canonical_headers = "".join(f"{n}:{headers.get(n, '').strip()}\n" for n in names)
    canonical = f"{method}\n{path or '/'}\n{_canonical_query(query)}\n{canonical_headers}\n{signed}\n{payload}"
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        return 400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."
    return None


@dataclass(frozen=True)
class Window:
    """At most ``count`` events per ``seconds``."""

    count: int
    seconds: float


@dataclass(frozen=True)
class AliyunLimits:
    """The published defaults: a voice notice may reach one callee once a minute, five times an hour, twenty
    times a day; an SMS notification with one sign and template, fifty times a day per number; and each API's
    QPS cap per account (SendSms 5,000/s, IvrCall 100/s). ``None`` in a field switches that limit off."""

    voice_per_callee: tuple[Window, ...] = (Window(1, 60), Window(5, 3600), Window(20, 86400))
    sms_per_number: tuple[Window, ...] = (Window(50, 86400),)
    qps: dict[str, int] = field(default_factory=lambda: {"SendSms": 5000, "SendBatchSms": 5000,
                                                         "IvrCall": 100, "SingleCallByTts": 100})

    @classmethod
    def off(cls) -> AliyunLimits:
        return cls(voice_per_callee=(), sms_per_number=(), qps={})


class Ledger:
    """Times (scenario seconds) each key was used; answers whether one more use fits every window."""

    def __init__(self) -> None:
        self._uses: dict[str, list[float]] = defaultdict(list)

    def allows(self, key: str, windows: tuple[Window, ...], now: float) -> bool:
        uses = self._uses[key]
        return all(sum(1 for t in uses if now - t < w.seconds) < w.count for w in windows)

    def use(self, key: str, now: float) -> None:
        self._uses[key].append(now)


class Qps:
    """Requests per real second per API (the provider's throttle is in real time, whatever the drill clock)."""

    def __init__(self) -> None:
        self._recent: dict[str, deque[float]] = defaultdict(deque)

    def allows(self, action: str, cap: int | None) -> bool:
        if not cap:
            return True
        now = time.monotonic()
        q = self._recent[action]
        while q and now - q[0] >= 1.0:
            q.popleft()
        if len(q) >= cap:
            return False
        q.append(now)
        return True
