"""Structured log lines, and a limiter so a flood of bad input is logged once, not a million times."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time


class KeyValueFormatter(logging.Formatter):
    """``2026-07-14T03:05:00Z INFO collector msg key=value ...``; extra fields come from ``extra={"kv": {...}}``."""

    def __init__(self, as_json: bool = False) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        kv = getattr(record, "kv", None) or {}
        msg = record.getMessage()
        if self.as_json:
            doc = {"ts": ts, "level": record.levelname, "logger": record.name, "msg": msg, **kv}
            if record.exc_info:
                doc["exc"] = record.exc_text or self.formatException(record.exc_info)
            return json.dumps(doc, ensure_ascii=False, default=str)
        line = f"{ts} {record.levelname:<7} {record.name} {msg}"
        if kv:
            line += " " + " ".join(f"{k}={_quote(v)}" for k, v in kv.items())
        if record.exc_info:
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return line


def _quote(v: object) -> str:
    s = str(v)
    return json.dumps(s, ensure_ascii=False) if (" " in s or "=" in s or not s) else s


def setup(level: str = "INFO", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(as_json))
    handler.addFilter(RedactSecrets())
    sys.excepthook = _redacting_excepthook  # a crash's traceback goes to the journal too
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


_SECRET_ENV = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|API_?KEY", re.IGNORECASE)
_MIN_SECRET_LEN = 6  # shorter values ("true", "1") would blank out ordinary words; no real secret is that short
_known_secrets: set[str] = set()
REDACTED = "[REDACTED]"


def register_secret(value: str) -> None:
    """Never log ``value`` (called by ``Secret.get()`` for every secret the daemon resolves)."""
    if len(value) >= _MIN_SECRET_LEN:
        _known_secrets.add(value)


def secret_values() -> list[str]:
    """Registered secrets and the values of env vars named like *TOKEN*, *PASSWORD*, *SECRET*; longest first."""
    found = set(_known_secrets)
    found.update(v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= _MIN_SECRET_LEN)
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    for value in secret_values() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def _redact_value(v: object, secrets: list[str]) -> object:
    if v is None or isinstance(v, (bool, int, float)):
        return v
    return redact(v if isinstance(v, str) else str(v), secrets)


class RedactSecrets(logging.Filter):
    """Replace every known secret value in a record (message, ``kv`` extras, traceback) with ``[REDACTED]``.

    Installed on the handler by :func:`setup`, so it sees records from every logger,
    including libraries' (an exception text quoting a URL with a token in it).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = secret_values()
        if not secrets:
            return True
        msg = record.getMessage()
        record.msg, record.args = redact(msg, secrets), None
        kv = getattr(record, "kv", None)
        if isinstance(kv, dict):
            record.kv = {k: _redact_value(v, secrets) for k, v in kv.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        return True


def _redacting_excepthook(kind: type[BaseException], exc: BaseException, tb: object) -> None:
    import traceback

    sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))  # type: ignore[arg-type]


class Limiter:
    """Allow one log line per key per ``interval_s``; count what was suppressed.

    ``if limiter.allow(("bad-json", topic)): log.warning(...)`` keeps a stream of
    garbage from one gateway to one line a minute, with the count of the rest.
    """

    def __init__(self, interval_s: float = 60.0, max_keys: int = 10_000) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[object, float] = {}
        self.suppressed: dict[object, int] = {}

    def allow(self, key: object) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self.suppressed[key] = self.suppressed.get(key, 0) + 1
            return False
        if len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = now
        return True

    def take_suppressed(self, key: object) -> int:
        return self.suppressed.pop(key, 0)
