"""A warning's way down the chain, read from the alerts' notification log (read-only; alerts owns the file).

The log already holds everything the duty office asks: every version of every warning (its history),
every notification with its status, the confirmations (叫应) and the escalation steps. This module only
reads it; :meth:`ChainLog.changed` tells the live loop when alerts has committed anything new
(``PRAGMA data_version``), so the browser hears of a delivery or a confirmation without a poll of its own.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerts.nflog import progress
from yujing.model import HazardWarning


@dataclass
class Person:
    name: str
    role: str


@dataclass
class ChainLog:
    path: Path
    people: dict[str, Person] = field(default_factory=dict)  # phone -> who (for the role)
    _db: sqlite3.Connection | None = None
    _version: int = -1

    def _open(self) -> sqlite3.Connection | None:
        if self._db is None:
            if not self.path.exists():
                return None  # alerts has not started yet: nothing told
            try:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
                self._db.execute("SELECT 1 FROM notifications LIMIT 1")
            except sqlite3.Error:
                self.close()
                return None
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def changed(self) -> bool:
        """Has anyone committed to the log since the last call? (cheap: no table is read)"""
        db = self._open()
        if db is None:
            return False
        try:
            (v,) = db.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            self.close()
            return False
        moved, self._version = v != self._version, v
        return moved

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        db = self._open()
        if db is None:
            return []
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.Error:
            self.close()
            return []

    def history(self, key: str) -> list[dict[str, Any]]:
        """Every version of ``key`` as alerts received it: issued, upgraded, downgraded, lifted."""
        out = []
        for payload, received in self._rows("SELECT payload, received_at FROM warnings WHERE key=? ORDER BY version",
                                            (key,)):
            w = HazardWarning.model_validate_json(payload)
            out.append({"version": w.version, "state": w.state.value, "level": w.level.value,
                        "at": w.updated_at.isoformat(), "received_at": received, "title": w.title,
                        "evidence": w.evidence})
        return out

    def latest(self, key: str) -> HazardWarning | None:
        rows = self._rows("SELECT payload FROM warnings WHERE key=? ORDER BY version DESC LIMIT 1", (key,))
        return HazardWarning.model_validate_json(rows[0][0]) if rows else None

    def notifications(self, key: str) -> list[dict[str, Any]]:
        confirmed = {(wid, phone): (via, at) for wid, phone, via, at in self._rows(
            "SELECT c.warning_id, c.phone, c.via, c.at FROM confirmations c WHERE c.warning_id IN "
            "(SELECT id FROM warnings WHERE key=?)", (key,))}
        out = []
        for (wid, phone, channel, attempt, status, tier, node, name, reason, created, sent, error, body) in self._rows(
                "SELECT warning_id, phone, channel, attempt, status, tier, node, name, reason, created_at, sent_at,"
                " error, body FROM notifications WHERE warning_key=? ORDER BY seq", (key,)):
            via, at = confirmed.get((wid, phone), (None, None))
            out.append({"version": int(wid.rsplit("#", 1)[-1]), "phone": phone, "name": name,
                        "role": self._role(phone), "tier": tier, "node": node, "channel": channel,
                        "attempt": attempt, "status": status, "escalation": reason or "", "created_at": created,
                        "sent_at": sent, "error": error or "", "confirmed_at": at, "confirmed_via": via,
                        "body": body})
        return out

    def plans(self, key: str) -> list[dict[str, Any]]:
        """Alerts' fan-out plans for ``key`` (``fanout-plan`` events): per version and attempt, what was sent and
        the estimated seconds to the last person, given our rates and the provider's limits (alerts/plan.py)."""
        out = []
        for wid, at, detail in self._rows("SELECT warning_id, at, detail FROM events WHERE what='fanout-plan' AND "
                                          "warning_id IN (SELECT id FROM warnings WHERE key=?) ORDER BY seq", (key,)):
            try:
                plan = json.loads(detail)
            except ValueError:
                continue  # alerts wrote it; a torn row is not the console's to mend
            out.append({"version": int(wid.rsplit("#", 1)[-1]), "at": at, **plan})
        return out

    def _role(self, phone: str) -> str:
        p = self.people.get(phone)
        return p.role if p else ""

    def progress(self, warning_id: str) -> dict[str, Any]:
        """Told, delivered, failed, confirmed, escalated per tier of the chain, and who has not confirmed
        (alerts.nflog.progress: the duty API counts the same way)."""
        rows = self._rows(f"SELECT {progress.COLUMNS} FROM notifications WHERE warning_id=? ORDER BY seq", (warning_id,))
        confirmed = {p for (p,) in self._rows("SELECT phone FROM confirmations WHERE warning_id=?", (warning_id,))}
        out = progress.delivery(rows, confirmed)
        for u in out["unconfirmed"]:
            u["role"] = self._role(u["phone"])
        return out

    def level_spans(self, site: str) -> list[tuple[str, str | None, str]]:
        """(from, to, level) while a warning at ``site`` stood, from the log's history (to None: still)."""
        by_key: dict[str, list[tuple[str, str | None]]] = {}
        for (payload,) in self._rows("SELECT payload FROM warnings WHERE payload LIKE ? ORDER BY key, version",
                                     (f'%"site":"{site}"%',)):
            w = HazardWarning.model_validate_json(payload)
            if w.site != site or w.hazard.value == "equipment":
                continue
            lvl = None if w.state.value == "lifted" else w.level.value
            by_key.setdefault(w.key, []).append((w.updated_at.isoformat(), lvl))
        spans = []
        for changes in by_key.values():
            for (t, lvl), nxt in zip(changes, changes[1:] + [(None, None)]):
                if lvl:
                    spans.append((t, nxt[0], lvl))
        return spans


def people_of(config: Any, households: dict[str, list[Any]] | None = None) -> dict[str, Person]:
    """phone -> name and role, from the areas, the sites and the households."""
    out: dict[str, Person] = {}
    for group in (households or {}).values():
        for p in group:
            out[p.phone] = Person(p.name, p.role.value)
    for a in config.areas:
        for p in a.people:
            out[p.phone] = Person(p.name, p.role.value)
    for s in config.sites:
        for p in s.people:
            out[p.phone] = Person(p.name, p.role.value)
    return out
