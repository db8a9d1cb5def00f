"""What the duty office shows of a warning's delivery: read from the alerts notification log, read-only.

The log is alerts' own (SQLite, WAL): readers never block its writer, and this module never writes to it;
changes (a confirmation entered by the duty officer, a resend) go to alerts as commands on the bus.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alerts.nflog import progress
from yujing.model import HazardWarning, WarningState


class Progress:
    def __init__(self, *paths: Path) -> None:
        self.paths = paths  # the real log, then the drill log

    @contextlib.contextmanager
    def _dbs(self) -> Iterator[list[sqlite3.Connection]]:
        dbs = []
        try:
            for p in self.paths:
                if p.exists():
                    dbs.append(sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5.0))
            yield dbs
        finally:
            for db in dbs:
                db.close()

    def warnings(self) -> dict[str, HazardWarning]:
        """The latest version alerts has of every warning key, lifted ones included."""
        out: dict[str, HazardWarning] = {}
        with self._dbs() as dbs:
            for db in dbs:
                rows = db.execute("SELECT w.payload FROM warnings w JOIN (SELECT key, MAX(version) m FROM warnings"
                                  " GROUP BY key) l ON w.key = l.key AND w.version = l.m").fetchall()
                for (payload,) in rows:
                    w = HazardWarning.model_validate_json(payload)
                    if w.key not in out or out[w.key].version < w.version:
                        out[w.key] = w
        return out

    def summary(self, key: str) -> dict[str, Any]:
        """Every version of ``key``, the real log's and the drill log's rows together, counted as the console counts
        one version (alerts.nflog.progress)."""
        rows: list[tuple] = []
        confirmed: set[str] = set()
        with self._dbs() as dbs:
            for db in dbs:
                rows += db.execute(f"SELECT {progress.COLUMNS} FROM notifications WHERE warning_key=? ORDER BY seq",
                                   (key,)).fetchall()
                confirmed |= {p for (p,) in db.execute(
                    "SELECT c.phone FROM confirmations c JOIN warnings w ON c.warning_id = w.id WHERE w.key=?", (key,))}
        return progress.delivery(rows, confirmed)

    def notifications(self, key: str) -> list[dict[str, Any]]:
        out = []
        with self._dbs() as dbs:
            for db in dbs:
                conf = {(wid, p): (at, via) for wid, p, via, at in db.execute(
                    "SELECT c.warning_id, c.phone, c.via, c.at FROM confirmations c JOIN warnings w"
                    " ON c.warning_id = w.id WHERE w.key=?", (key,))}
                for wid, phone, name, tier, channel, status, attempt, reason, at in db.execute(
                        "SELECT warning_id, phone, name, tier, channel, status, attempt, reason, created_at"
                        " FROM notifications WHERE warning_key=? ORDER BY seq", (key,)):
                    c = conf.get((wid, phone))
                    out.append({"warning": wid, "person": name, "role": tier, "phone": phone, "channel": channel,
                                "status": status, "attempt": attempt, "reason": reason, "at": at,
                                "confirmed_at": c[0] if c else None, "confirmed_via": c[1] if c else None})
        return out

    def history(self, key: str) -> list[dict[str, Any]]:
        with self._dbs() as dbs:
            rows = [r for db in dbs for r in db.execute(
                "SELECT payload FROM warnings WHERE key=? ORDER BY version", (key,))]
        out = []
        for (payload,) in rows:
            w = HazardWarning.model_validate_json(payload)
            out.append({"version": w.version, "state": w.state.value, "level": w.level.value,
                        "at": w.updated_at.isoformat()})
        return out


def in_force(ws: list[HazardWarning]) -> list[HazardWarning]:
    return [w for w in ws if w.state is not WarningState.LIFTED]
