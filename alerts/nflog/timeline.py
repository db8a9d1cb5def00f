"""Every step of every warning as an event with its timestamp: what the drill report and the console show."""

from __future__ import annotations

import json
from datetime import datetime
from typing import NamedTuple

from alerts.nflog.db import LogDb

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, warning_id TEXT NOT NULL, phone TEXT NOT NULL,
  what TEXT NOT NULL, detail TEXT NOT NULL DEFAULT ''
);
"""


# one encoder: json.dumps with any argument builds a new JSONEncoder per call (three events per SMS in a fan-out)
_JSON = json.JSONEncoder(ensure_ascii=False)


class Event(NamedTuple):
    at: str  # ISO, scenario clock
    warning_id: str
    phone: str
    what: str
    detail: str  # JSON, or plain text


class Timeline:
    def __init__(self, db: LogDb) -> None:
        self.db = db

    def add(self, at: datetime, warning_id: str, phone: str, what: str, detail: str | dict = "") -> None:
        text = detail if isinstance(detail, str) else _JSON.encode(detail)
        # appended: inside a transaction (a group commit's turn) the turn's events go in one executemany
        self.db.append("INSERT INTO events(at, warning_id, phone, what, detail) VALUES (?,?,?,?,?)",
                       (at.isoformat(), warning_id, phone, what, text))

    def all(self, warning_id: str | None = None, what: str | None = None) -> list[Event]:
        """Oldest first; of one warning, and of one kind, if given."""
        self.db.flush_appends()  # inside a transaction: its own events too
        where, args = [], []
        if warning_id is not None:
            where.append("warning_id=?")
            args.append(warning_id)
        if what is not None:
            where.append("what=?")
            args.append(what)
        sql = "SELECT at, warning_id, phone, what, detail FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [Event(*r) for r in self.db.execute(sql + " ORDER BY seq", args)]
