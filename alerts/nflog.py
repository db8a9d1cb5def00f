"""The durable notification log (SQLite, WAL): "was this already sent?" has one answer, here.

Every warning is recorded before anything is done about it; every notification is a row keyed by a
deterministic key (``warning#version|phone|channel|attempt``) written ``queued`` before it is sent,
``sending`` just before the provider is asked, and ``sent`` with the provider's sid after. After a
crash, ``queued`` rows are sent, ``sending`` rows are reconciled with the provider (did the request
arrive?) and nothing ``sent`` is sent again. Escalation timers are rows with a due time, so they
resume after a restart. Every step is an event with a timestamp. Every CAP document is kept as it was
built (an Update after a restart still references the message before it) with whether the broker took it.

Real and drill warnings live in separate files (``alerts.sqlite`` and ``alerts-drill.sqlite``); a log
opened for one refuses the other, so a drill can never be promoted to a real warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Self

from alerts.cap import thread
from yujing.errors import StoreError
from yujing.model import HazardWarning

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS warnings (
  id TEXT PRIMARY KEY, key TEXT NOT NULL, version INTEGER NOT NULL, payload TEXT NOT NULL,
  received_at TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'received'   -- received | routed | grouped | silenced
);
CREATE INDEX IF NOT EXISTS warnings_key ON warnings(key, version);
CREATE TABLE IF NOT EXISTS notifications (
  key TEXT PRIMARY KEY, warning_id TEXT NOT NULL, warning_key TEXT NOT NULL, phone TEXT NOT NULL,
  channel TEXT NOT NULL, attempt INTEGER NOT NULL, priority INTEGER NOT NULL, seq INTEGER NOT NULL,
  body TEXT NOT NULL, ack INTEGER NOT NULL, node TEXT NOT NULL, tier TEXT NOT NULL, name TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, sid TEXT, error TEXT,
  created_at TEXT NOT NULL, sending_at TEXT, sent_at TEXT, updated_at TEXT NOT NULL, ref TEXT NOT NULL,
  template TEXT NOT NULL DEFAULT ''   -- JSON {"name", "params"}: what a template provider sends
);
CREATE INDEX IF NOT EXISTS notifications_ref ON notifications(ref);
CREATE INDEX IF NOT EXISTS notifications_status ON notifications(status);
CREATE INDEX IF NOT EXISTS notifications_sid ON notifications(sid);
CREATE INDEX IF NOT EXISTS notifications_wkey ON notifications(warning_key, phone);
CREATE INDEX IF NOT EXISTS notifications_wid ON notifications(warning_id, phone);
CREATE TABLE IF NOT EXISTS confirmations (
  warning_id TEXT NOT NULL, phone TEXT NOT NULL, via TEXT NOT NULL, at TEXT NOT NULL,
  PRIMARY KEY (warning_id, phone)
);
CREATE TABLE IF NOT EXISTS escalations (
  warning_id TEXT NOT NULL, phone TEXT NOT NULL, step INTEGER NOT NULL, due_at TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',   -- pending | done | stopped
  PRIMARY KEY (warning_id, phone, step)
);
CREATE TABLE IF NOT EXISTS caps (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, identifier TEXT NOT NULL UNIQUE, warning_id TEXT NOT NULL,
  hazard TEXT NOT NULL, site TEXT NOT NULL, xml TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS caps_group ON caps(hazard, site);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, warning_id TEXT NOT NULL, phone TEXT NOT NULL,
  what TEXT NOT NULL, detail TEXT NOT NULL DEFAULT ''
);
"""

def ref(key: str) -> str:
    """A notification's key as 20 hex digits: what callback URLs carry."""
    return hashlib.sha1(key.encode()).hexdigest()[:20]


def _by(sending_at: str | None, when: datetime) -> bool:
    return sending_at is not None and datetime.fromisoformat(sending_at) <= when


# 'sending' is the dangerous window: the request may or may not have reached the provider.
PENDING = ("queued", "sending")
DONE = ("sent", "queued-at-provider", "delivered", "undelivered", "failed", "rejected", "ringing", "in-progress",
        "completed", "busy", "no-answer", "canceled")


@dataclass(slots=True)
class Notification:
    key: str
    warning_id: str
    warning_key: str
    phone: str
    channel: str
    attempt: int
    priority: int  # larger first (red 4 .. blue 1; escalations +10)
    body: str
    ack: bool
    node: str
    tier: str
    name: str
    reason: str = ""
    template: str = ""  # JSON {"name": …, "params": {…}}: the rendering for providers of approved templates only
    status: str = "queued"
    sid: str | None = None
    seq: int = 0
    created_at: str = ""
    sending_at: str | None = None

    @staticmethod
    def make_key(warning_id: str, phone: str, channel: str, attempt: int) -> str:
        return f"{warning_id}|{phone}|{channel}|{attempt}"


_COLS = ("key", "warning_id", "warning_key", "phone", "channel", "attempt", "priority", "body", "ack", "node",
         "tier", "name", "reason", "template", "status", "sid", "seq", "created_at", "sending_at")


class NotificationLog:
    """One SQLite file; use as a context manager. ``drill`` says which kind of warning it may hold."""

    def __init__(self, path: Path | str, drill: bool = False) -> None:
        self.path = Path(path)
        self.drill = drill
        self._db: sqlite3.Connection | None = None
        self._seq = 0

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash; see README on power loss
            db.executescript(SCHEMA)
            cols = {r[1] for r in db.execute("PRAGMA table_info(notifications)")}
            if "template" not in cols:  # a log from before template providers
                db.execute("ALTER TABLE notifications ADD COLUMN template TEXT NOT NULL DEFAULT ''")
            kind = "drill" if self.drill else "real"
            db.execute("INSERT OR IGNORE INTO meta VALUES ('kind', ?)", (kind,))
            (stored,) = db.execute("SELECT v FROM meta WHERE k='kind'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"notification log {self.path}: {exc}") from exc
        if stored != kind:
            db.close()
            raise StoreError(f"notification log {self.path} holds {stored} warnings; refusing to open it for {kind}")
        self._db = db
        self._seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM notifications").fetchone()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "notification log is not open"
        return self._db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all; inside another transaction it joins that one.

        For steps whose parts must not be split by a crash: an escalation step is closed, the next one
        scheduled and its notifications queued in one transaction, or the step is still due after a restart.
        """
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.rollback()
            raise
        self.db.commit()

    def _check(self, w: HazardWarning) -> None:
        if w.drill != self.drill:
            raise StoreError(f"{'a drill' if w.drill else 'a real'} warning {w.id} cannot enter the "
                             f"{'drill' if self.drill else 'real'} notification log")

    # ---- warnings -------------------------------------------------------------------------------
    def record_warning(self, w: HazardWarning, at: datetime) -> bool:
        """Remember ``w`` before acting on it. False if this key#version was already recorded."""
        self._check(w)
        cur = self.db.execute("INSERT OR IGNORE INTO warnings(id, key, version, payload, received_at)"
                              " VALUES (?,?,?,?,?)",
                              (w.id, w.key, w.version, w.model_dump_json(), at.isoformat()))
        return cur.rowcount == 1

    def set_warning_state(self, warning_id: str, state: str) -> None:
        self.db.execute("UPDATE warnings SET state=? WHERE id=?", (state, warning_id))

    def warnings_in(self, state: str) -> list[HazardWarning]:
        rows = self.db.execute("SELECT payload FROM warnings WHERE state=? ORDER BY received_at", (state,))
        return [HazardWarning.model_validate_json(p) for (p,) in rows]

    def latest(self, key: str) -> HazardWarning | None:
        row = self.db.execute("SELECT payload FROM warnings WHERE key=? ORDER BY version DESC LIMIT 1",
                              (key,)).fetchone()
        return HazardWarning.model_validate_json(row[0]) if row else None

    def warning(self, warning_id: str) -> HazardWarning | None:
        row = self.db.execute("SELECT payload FROM warnings WHERE id=?", (warning_id,)).fetchone()
        return HazardWarning.model_validate_json(row[0]) if row else None

    # ---- notifications --------------------------------------------------------------------------
    def enqueue(self, items: list[Notification], at: datetime) -> list[Notification]:
        """Write ``items`` as 'queued' in one transaction; returns those that were new (keys are idempotent)."""
        ts = at.isoformat()
        fresh: list[Notification] = []
        rows: list[tuple] = []
        with self.transaction():
            wids = sorted({n.warning_id for n in items})
            marks = ",".join("?" * len(wids))
            seen = {k for (k,) in self.db.execute(f"SELECT key FROM notifications WHERE warning_id IN ({marks})", wids)}
            for n in items:
                if n.key in seen:
                    continue
                seen.add(n.key)
                self._seq += 1
                n.seq, n.created_at = self._seq, ts
                fresh.append(n)
                rows.append((n.key, n.warning_id, n.warning_key, n.phone, n.channel, n.attempt, n.priority, self._seq,
                             n.body, int(n.ack), n.node, n.tier, n.name, n.reason, ts, ts, ref(n.key), n.template))
            self.db.executemany(
                "INSERT INTO notifications(key, warning_id, warning_key, phone, channel, attempt, priority,"
                " seq, body, ack, node, tier, name, reason, status, created_at, updated_at, ref, template)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,'queued',?,?,?,?)", rows)
        return fresh

    def claim(self, key: str, at: datetime) -> bool:
        """Mark ``key`` 'sending' (durably) just before asking the provider; False if it is not 'queued'."""
        cur = self.db.execute("UPDATE notifications SET status='sending', sending_at=?, updated_at=? "
                              "WHERE key=? AND status='queued'", (at.isoformat(), at.isoformat(), key))
        return cur.rowcount == 1

    def sent(self, key: str, sid: str, at: datetime) -> None:
        self.db.execute("UPDATE notifications SET status='sent', sid=?, sent_at=?, updated_at=? WHERE key=?",
                        (sid, at.isoformat(), at.isoformat(), key))

    def failed(self, key: str, error: str, at: datetime) -> None:
        self.db.execute("UPDATE notifications SET status='failed', error=?, updated_at=? WHERE key=?",
                        (error[:500], at.isoformat(), key))

    def requeue(self, key: str, at: datetime) -> None:
        """A 'sending' row the provider never saw goes back to 'queued'."""
        self.db.execute("UPDATE notifications SET status='queued', updated_at=? WHERE key=? AND status='sending'",
                        (at.isoformat(), key))

    def provider_status(self, sid: str, status: str, error: str, at: datetime) -> Notification | None:
        """A status callback: record it, return the notification it belongs to (None if unknown)."""
        self.db.execute("UPDATE notifications SET status=?, error=COALESCE(NULLIF(?, ''), error), updated_at=? "
                        "WHERE sid=?", (status, error, at.isoformat(), sid))
        return self._one("sid=?", (sid,))

    def get(self, key: str) -> Notification | None:
        return self._one("key=?", (key,))

    def by_ref(self, reference: str) -> Notification | None:
        """By its ref, or by a prefix of it (Alibaba Cloud's voice OutId holds 15 characters)."""
        if len(reference) >= len(ref("")):
            return self._one("ref=?", (reference,))
        if len(reference) < 12:
            return None
        return self._one("ref>=? AND ref<?", (reference, reference + "g"))

    def calls_to(self, phone: str, since: datetime, now: datetime | None = None) -> list[str]:
        """When calls to ``phone`` were queued since ``since`` (ISO, oldest first), whatever the warning: what
        a provider's per-callee limit counts. With ``now``: when they were *placed* — those in flight
        ('sending') count as placed ``now``, so two workers never both pass the limit for one callee."""
        if now is None:
            return [r[0] for r in self.db.execute(
                "SELECT created_at FROM notifications WHERE phone=? AND channel='voice' AND created_at>=? "
                "AND status NOT IN ('failed', 'rejected') ORDER BY 1", (phone, since.isoformat()))]
        return [r[0] for r in self.db.execute(
            "SELECT COALESCE(sent_at, ?) FROM notifications WHERE phone=? AND channel='voice' AND "
            "(status='sending' OR (sent_at>=? AND status NOT IN ('failed', 'rejected'))) ORDER BY 1",
            (now.isoformat(), phone, since.isoformat()))]

    def has_sid(self, sid: str) -> bool:
        """Is ``sid`` already some notification's? (A provider lookup must not hand it to another.)"""
        return self.db.execute("SELECT 1 FROM notifications WHERE sid=? LIMIT 1", (sid,)).fetchone() is not None

    def status(self, key: str) -> str | None:
        row = self.db.execute("SELECT status FROM notifications WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def was_sent(self, key: str) -> bool:
        """The one answer: has the provider accepted (or possibly accepted) this notification?"""
        return self.status(key) not in (None, "queued")

    def pending_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM notifications WHERE status IN ('queued', 'sending')").fetchone()[0]

    def pending(self) -> list[Notification]:
        return self._many("status IN ('queued', 'sending') ORDER BY priority DESC, seq", ())

    def for_warning_key(self, warning_key: str) -> list[Notification]:
        return self._many("warning_key=? ORDER BY seq", (warning_key,))

    def first_to(self, warning_id: str, phone: str) -> Notification | None:
        return self._one("warning_id=? AND phone=? ORDER BY seq", (warning_id, phone))

    def chain_members(self, warning_id: str, origin: str) -> set[str]:
        """Phones told as part of ``origin``'s escalation chain (``reason`` ends with ``:origin``)."""
        rows = self.db.execute("SELECT DISTINCT phone FROM notifications WHERE warning_id=? AND reason LIKE ?",
                               (warning_id, "%:" + origin))
        return {p for (p,) in rows} | {origin}

    def for_warning(self, warning_id: str) -> list[Notification]:
        return self._many("warning_id=? ORDER BY seq", (warning_id,))

    def awaiting_confirmation(self, phone: str, asked_by: datetime | None = None) -> list[Notification]:
        """Notifications to ``phone`` that asked for 叫应 and are not yet confirmed, newest first; with ``asked_by``
        only those whose request to the provider was made by then (``sending_at``, wall clock)."""
        rows = self._many("phone=? AND ack=1 AND NOT EXISTS (SELECT 1 FROM confirmations c WHERE "
                          "c.warning_id=notifications.warning_id AND c.phone=notifications.phone) ORDER BY seq DESC",
                          (phone,))
        return rows if asked_by is None else [n for n in rows if _by(n.sending_at, asked_by)]

    def was_asked(self, phone: str, asked_by: datetime) -> bool:
        """Was ``phone`` ever asked to confirm anything, by a request made by ``asked_by``?"""
        rows = self.db.execute("SELECT sending_at FROM notifications WHERE phone=? AND ack=1 AND "
                               "sending_at IS NOT NULL", (phone,))
        return any(_by(at, asked_by) for (at,) in rows)

    def _one(self, where: str, args: tuple) -> Notification | None:
        rows = self._many(where + " LIMIT 1", args)
        return rows[0] if rows else None

    def _many(self, where: str, args: tuple) -> list[Notification]:
        rows = self.db.execute(f"SELECT {', '.join(_COLS)} FROM notifications WHERE {where}", args)
        return [Notification(**dict(zip(_COLS, r, strict=True))) for r in rows]

    # ---- 叫应 and escalation --------------------------------------------------------------------
    def confirm(self, warning_id: str, phone: str, via: str, at: datetime) -> bool:
        cur = self.db.execute("INSERT OR IGNORE INTO confirmations VALUES (?,?,?,?)",
                              (warning_id, phone, via, at.isoformat()))
        return cur.rowcount == 1

    def confirmed(self, warning_id: str, phones: list[str] | None = None) -> set[str]:
        rows = self.db.execute("SELECT phone FROM confirmations WHERE warning_id=?", (warning_id,))
        got = {p for (p,) in rows}
        return got if phones is None else got & set(phones)

    def schedule(self, warning_id: str, phone: str, step: int, due: datetime) -> bool:
        """False if that step of that chain already exists (whatever its state): scheduling is idempotent."""
        cur = self.db.execute("INSERT OR IGNORE INTO escalations VALUES (?,?,?,?, 'pending')",
                              (warning_id, phone, step, due.isoformat()))
        return cur.rowcount == 1

    def due_escalations(self) -> Iterator[tuple[str, str, int, datetime]]:
        rows = self.db.execute("SELECT warning_id, phone, step, due_at FROM escalations WHERE state='pending'"
                               " ORDER BY due_at")
        for wid, phone, step, due in rows.fetchall():
            yield wid, phone, step, datetime.fromisoformat(due)

    def close_escalation(self, warning_id: str, phone: str, step: int, state: str = "done") -> None:
        self.db.execute("UPDATE escalations SET state=? WHERE warning_id=? AND phone=? AND step=?",
                        (state, warning_id, phone, step))

    def stop_escalations(self, warning_id: str, phone: str | None = None) -> int:
        if phone is None:
            cur = self.db.execute("UPDATE escalations SET state='stopped' WHERE warning_id=? AND state='pending'",
                                  (warning_id,))
        else:
            cur = self.db.execute("UPDATE escalations SET state='stopped' WHERE warning_id=? AND phone=? AND "
                                  "state='pending'", (warning_id, phone))
        return cur.rowcount

    # ---- CAP documents ----------------------------------------------------------------------------
    def record_cap(self, w: HazardWarning, identifier: str, xml: str, published: bool = False) -> None:
        self.db.execute("INSERT OR IGNORE INTO caps(identifier, warning_id, hazard, site, xml, published)"
                        " VALUES (?,?,?,?,?,?)", (identifier, w.id, w.hazard.value, thread(w), xml, int(published)))

    def cap(self, identifier: str) -> str | None:
        row = self.db.execute("SELECT xml FROM caps WHERE identifier=?", (identifier,)).fetchone()
        return row[0] if row else None

    def last_capped(self, hazard: str, site: str) -> HazardWarning | None:
        """The warning of the latest CAP document for (hazard, site): what the next one references."""
        row = self.db.execute("SELECT warning_id FROM caps WHERE hazard=? AND site=? ORDER BY seq DESC LIMIT 1",
                              (hazard, site)).fetchone()
        return self.warning(row[0]) if row else None

    def caps(self, unpublished: bool = False) -> list[tuple[str, str, str, str]]:
        """(identifier, hazard, site, xml), oldest first; ``unpublished``: only those the broker has not taken."""
        where = " WHERE published=0" if unpublished else ""
        return list(self.db.execute(f"SELECT identifier, hazard, site, xml FROM caps{where} ORDER BY seq"))

    def cap_published(self, identifier: str) -> None:
        self.db.execute("UPDATE caps SET published=1 WHERE identifier=?", (identifier,))

    # ---- the timeline ---------------------------------------------------------------------------
    def event(self, at: datetime, warning_id: str, phone: str, what: str, detail: str | dict = "") -> None:
        text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
        self.db.execute("INSERT INTO events(at, warning_id, phone, what, detail) VALUES (?,?,?,?,?)",
                        (at.isoformat(), warning_id, phone, what, text))

    def events(self, warning_id: str | None = None) -> list[tuple[str, str, str, str, str]]:
        if warning_id is None:
            return list(self.db.execute("SELECT at, warning_id, phone, what, detail FROM events ORDER BY seq"))
        return list(self.db.execute("SELECT at, warning_id, phone, what, detail FROM events WHERE warning_id=? "
                                    "ORDER BY seq", (warning_id,)))
