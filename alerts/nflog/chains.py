"""叫应: who confirmed which warning, and the escalation timers of the chains still waiting.

A chain is (warning id, the phone asked to confirm); its steps are rows with a due time on the scenario
clock, so they resume after a restart and run at drill speed (alerts/escalate.py decides what a step does).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from alerts.nflog.db import LogDb
from alerts.nflog.states import ChainState

SCHEMA = """
CREATE TABLE IF NOT EXISTS confirmations (
  warning_id TEXT NOT NULL, phone TEXT NOT NULL, via TEXT NOT NULL, at TEXT NOT NULL,
  PRIMARY KEY (warning_id, phone)
);
CREATE TABLE IF NOT EXISTS escalations (
  warning_id TEXT NOT NULL, phone TEXT NOT NULL, step INTEGER NOT NULL, due_at TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',   -- ChainState
  PRIMARY KEY (warning_id, phone, step)
);
"""


class Confirmations:
    def __init__(self, db: LogDb) -> None:
        self.db = db

    def add(self, warning_id: str, phone: str, via: str, at: datetime) -> bool:
        """False if ``phone`` had already confirmed ``warning_id``."""
        cur = self.db.execute("INSERT OR IGNORE INTO confirmations VALUES (?,?,?,?)",
                              (warning_id, phone, via, at.isoformat()))
        return cur.rowcount == 1

    def of(self, warning_id: str, phones: list[str] | None = None) -> set[str]:
        """The phones that confirmed ``warning_id`` (of ``phones``, if given)."""
        rows = self.db.execute("SELECT phone FROM confirmations WHERE warning_id=?", (warning_id,))
        got = {p for (p,) in rows}
        return got if phones is None else got & set(phones)

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM confirmations").fetchone()[0]


class Timers:
    """The escalation steps, due or taken."""

    def __init__(self, db: LogDb) -> None:
        self.db = db

    def schedule(self, warning_id: str, phone: str, step: int, due: datetime) -> bool:
        """False if that step of that chain already exists (whatever its state): scheduling is idempotent."""
        cur = self.db.execute("INSERT OR IGNORE INTO escalations VALUES (?,?,?,?, 'pending')",
                              (warning_id, phone, step, due.isoformat()))
        return cur.rowcount == 1

    def pending(self) -> Iterator[tuple[str, str, int, datetime]]:
        """(warning id, origin phone, step, due), soonest first."""
        rows = self.db.execute("SELECT warning_id, phone, step, due_at FROM escalations WHERE state='pending'"
                               " ORDER BY due_at")
        for wid, phone, step, due in rows.fetchall():
            yield wid, phone, step, datetime.fromisoformat(due)

    def next_due(self) -> datetime | None:
        row = self.db.execute("SELECT MIN(due_at) FROM escalations WHERE state='pending'").fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def close(self, warning_id: str, phone: str, step: int, state: ChainState = ChainState.DONE) -> None:
        self.db.execute("UPDATE escalations SET state=? WHERE warning_id=? AND phone=? AND step=?",
                        (state, warning_id, phone, step))

    def stop(self, warning_id: str, phone: str | None = None) -> int:
        """Stop the pending steps of ``warning_id`` (of ``phone``'s chain only, if given); how many."""
        if phone is None:
            cur = self.db.execute("UPDATE escalations SET state='stopped' WHERE warning_id=? AND state='pending'",
                                  (warning_id,))
        else:
            cur = self.db.execute("UPDATE escalations SET state='stopped' WHERE warning_id=? AND phone=? AND "
                                  "state='pending'", (warning_id, phone))
        return cur.rowcount

    def waiting_versions(self, key: str, but: str) -> list[str]:
        """Ids of ``key``'s other versions (``key#n``) with steps still pending: what a newer version replaces."""
        rows = self.db.execute("SELECT DISTINCT warning_id FROM escalations WHERE warning_id LIKE ? AND "
                               "warning_id != ? AND state='pending'", (key + "#%", but))
        return [wid for (wid,) in rows.fetchall()]
