"""The audit log: every write to the duty office, allowed or refused — who, when, from where, what, the result.

SQLite (opened as every part opens one: yujing/sqlite.py, WAL, ``Sync.FULL``), append-only — triggers refuse
any UPDATE or DELETE: an entry is written before the answer goes back, so an action the operator saw succeed is
in the log even if the power fails right after.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from yujing.sqlite import Sync, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL,
  remote TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, result TEXT NOT NULL, status INTEGER NOT NULL,
  detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_append_only_u BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_d BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'append-only'); END;
"""


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    user: str  # '' when nobody was authenticated
    role: str
    remote: str  # the peer address
    action: str  # e.g. 'POST /api/v1/warnings'
    target: str  # the warning key, silence id, phone…
    result: str  # 'ok' or the error code ('forbidden', 'csrf', 'unauthenticated', 'unknown-area', …)
    status: int  # the HTTP status answered
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class AuditLog:
    def __init__(self, path: Path | str) -> None:
        # not tied to the thread that opened it, as before; the lock keeps writers one at a time
        self.db = open_db(Path(path), SCHEMA, sync=Sync.FULL, what="duty audit log", threads=True)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def record(self, at: datetime, *, user: str, role: str, remote: str, action: str, target: str, result: str,
               status: int, detail: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.db.execute("INSERT INTO audit(at, user, role, remote, action, target, result, status, detail)"
                            " VALUES (?,?,?,?,?,?,?,?,?)",
                            (at.isoformat(), user, role, remote, action, target, result, status,
                             json.dumps(detail or {}, ensure_ascii=False)))

    def entries(self, limit: int = 100) -> list[Entry]:
        rows = self.db.execute("SELECT seq, at, user, role, remote, action, target, result, status, detail"
                               " FROM audit ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [Entry(*r[:9], json.loads(r[9])) for r in rows]
