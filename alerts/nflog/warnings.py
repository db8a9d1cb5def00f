"""The warnings' record: every warning as received, before anything is done about it, and how far it got."""

from __future__ import annotations

from datetime import datetime

from alerts.nflog.db import LogDb
from alerts.nflog.states import WarningStatus
from yujing.errors import StoreError
from yujing.model import HazardWarning

SCHEMA = """
CREATE TABLE IF NOT EXISTS warnings (
  id TEXT PRIMARY KEY, key TEXT NOT NULL, version INTEGER NOT NULL, payload TEXT NOT NULL,
  received_at TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'received'   -- WarningStatus
);
CREATE INDEX IF NOT EXISTS warnings_key ON warnings(key, version);
"""


class WarningRecord:
    def __init__(self, db: LogDb, drill: bool) -> None:
        self.db = db
        self.drill = drill

    def record(self, w: HazardWarning, at: datetime) -> bool:
        """Remember ``w`` before acting on it. False if this key#version was already recorded."""
        if w.drill != self.drill:
            raise StoreError(f"{'a drill' if w.drill else 'a real'} warning {w.id} cannot enter the "
                             f"{'drill' if self.drill else 'real'} notification log")
        cur = self.db.execute("INSERT OR IGNORE INTO warnings(id, key, version, payload, received_at)"
                              " VALUES (?,?,?,?,?)",
                              (w.id, w.key, w.version, w.model_dump_json(), at.isoformat()))
        return cur.rowcount == 1

    def unrecord(self, warning_id: str) -> None:
        """Forget a warning nothing was done about yet (``received``): an alarm whose notifications the log
        refused is raised again at the next failure."""
        self.db.execute("DELETE FROM warnings WHERE id=? AND state=?", (warning_id, WarningStatus.RECEIVED))

    def set_state(self, warning_id: str, state: WarningStatus) -> None:
        self.db.execute("UPDATE warnings SET state=? WHERE id=?", (state, warning_id))

    def state(self, warning_id: str) -> WarningStatus | None:
        row = self.db.execute("SELECT state FROM warnings WHERE id=?", (warning_id,)).fetchone()
        return WarningStatus(row[0]) if row else None

    def in_state(self, *states: WarningStatus) -> list[HazardWarning]:
        """The warnings in any of ``states``, in the order they were received."""
        marks = ",".join("?" * len(states))
        rows = self.db.execute(f"SELECT payload FROM warnings WHERE state IN ({marks}) ORDER BY received_at", states)
        return [HazardWarning.model_validate_json(p) for (p,) in rows]

    def latest(self, key: str) -> HazardWarning | None:
        row = self.db.execute("SELECT payload FROM warnings WHERE key=? ORDER BY version DESC LIMIT 1",
                              (key,)).fetchone()
        return HazardWarning.model_validate_json(row[0]) if row else None

    def get(self, warning_id: str) -> HazardWarning | None:
        row = self.db.execute("SELECT payload FROM warnings WHERE id=?", (warning_id,)).fetchone()
        return HazardWarning.model_validate_json(row[0]) if row else None
