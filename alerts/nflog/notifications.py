"""The notifications: one row per message or call, keyed by ``warning#version|phone|channel|attempt``.

A row is written ``queued`` before it is sent, ``sending`` (durably) just before the provider is asked, and
``sent`` with the provider's sid after; receipts then record the provider's word. After a crash ``queued``
rows are sent, ``sending`` rows are reconciled with the provider (did the request arrive?) and nothing else
is sent again (alerts/fanout.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.nflog.db import LogDb
from alerts.nflog.states import Channel, NodeTier, Status

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
  key TEXT PRIMARY KEY, warning_id TEXT NOT NULL, warning_key TEXT NOT NULL, phone TEXT NOT NULL,
  channel TEXT NOT NULL, attempt INTEGER NOT NULL, priority INTEGER NOT NULL, seq INTEGER NOT NULL,
  body TEXT NOT NULL, ack INTEGER NOT NULL, node TEXT NOT NULL, tier TEXT NOT NULL, name TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, sid TEXT, error TEXT,
  created_at TEXT NOT NULL, sending_at TEXT, sent_at TEXT, updated_at TEXT NOT NULL, ref TEXT NOT NULL,
  template TEXT NOT NULL DEFAULT ''   -- JSON {"name", "params"}: what a template provider sends
);
CREATE INDEX IF NOT EXISTS notifications_ref ON notifications(ref);
-- only the rows still to send: a receipt's status change (two a SMS) then touches no index entry
DROP INDEX IF EXISTS notifications_status;
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications(status) WHERE status IN ('queued', 'sending');
CREATE INDEX IF NOT EXISTS notifications_sid ON notifications(sid);
CREATE INDEX IF NOT EXISTS notifications_wkey ON notifications(warning_key, phone);
CREATE INDEX IF NOT EXISTS notifications_wid ON notifications(warning_id, phone);
-- a provider's receipt for a sid not stored yet (the callback can beat the send's own answer): applied with it
CREATE TABLE IF NOT EXISTS early_receipts (sid TEXT NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL,
  said TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS early_receipts_sid ON early_receipts(sid);
CREATE INDEX IF NOT EXISTS early_receipts_at ON early_receipts(at);
"""
EARLY_KEEP = timedelta(days=1)  # an early receipt whose sid never lands (another log's, a lost send) is dropped


def ref(key: str) -> str:
    """A notification's key as 20 hex digits: what callback URLs carry."""
    return hashlib.sha1(key.encode()).hexdigest()[:20]


def _by(sending_at: str | None, when: datetime) -> bool:
    return sending_at is not None and datetime.fromisoformat(sending_at) <= when


@dataclass(slots=True)
class Notification:
    key: str
    warning_id: str
    warning_key: str
    phone: str
    channel: Channel
    attempt: int
    priority: int  # larger first (red 4 .. blue 1; escalations +10)
    body: str
    ack: bool
    node: str
    tier: NodeTier
    name: str
    reason: str = ""
    template: str = ""  # JSON {"name": …, "params": {…}}: the rendering for providers of approved templates only
    status: Status = Status.QUEUED
    sid: str | None = None
    seq: int = 0
    created_at: str = ""
    sending_at: str | None = None

    @staticmethod
    def make_key(warning_id: str, phone: str, channel: Channel, attempt: int) -> str:
        return f"{warning_id}|{phone}|{channel}|{attempt}"


_CHUNK = 500  # keys a statement names (SQLite allows 32,766 parameters)
_COLS = ("key", "warning_id", "warning_key", "phone", "channel", "attempt", "priority", "body", "ack", "node",
         "tier", "name", "reason", "template", "status", "sid", "seq", "created_at", "sending_at")
_SELECT = ", ".join(_COLS)
# Enum lookups by value, without Enum.__call__'s cost: a red's recovery reads 10,000 rows
_CHANNEL = {c.value: c for c in Channel}
_TIER = {t.value: t for t in NodeTier}
_STATUS = {s.value: s for s in Status}


def _row(r: tuple) -> Notification:
    (key, wid, wkey, phone, channel, attempt, priority, body, ack, node, tier, name, reason, template, status,
     sid, seq, created_at, sending_at) = r
    return Notification(key, wid, wkey, phone, _CHANNEL[channel], attempt, priority, body, bool(ack), node,
                        _TIER[tier], name, reason, template, _STATUS.get(status, Status.OTHER), sid, seq,
                        created_at, sending_at)


class Notifications:
    def __init__(self, db: LogDb) -> None:
        self.db = db
        if "template" not in db.columns("notifications"):  # a log from before template providers
            db.execute("ALTER TABLE notifications ADD COLUMN template TEXT NOT NULL DEFAULT ''")
        self._seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM notifications").fetchone()[0]
        # the sids of early receipts: sent() looks in the table only for these (a fan-out's sids land by thousands)
        self._early = {sid for (sid,) in db.execute("SELECT DISTINCT sid FROM early_receipts")}
        # receipts applied as their sid landed, for the receipts' follow-up (event, SMS fallback): sid -> them
        self.applied_early: dict[str, list[tuple[Status, str, str]]] = {}

    # ---- written by the pipeline and the fan-out --------------------------------------------------
    def enqueue(self, items: list[Notification], at: datetime) -> list[Notification]:
        """Write ``items`` as 'queued' in one transaction; returns those that were new (keys are idempotent)."""
        ts = at.isoformat()
        fresh: list[Notification] = []
        rows: list[tuple] = []
        with self.db.transaction():
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

    def claim_many(self, items: list[tuple[str, datetime]]) -> list[bool]:
        """:meth:`claim` for a turn's workers in one statement: True for each (key, wall) claimed now, the first of a
        key given twice. Each row's ``sending_at`` is the latest wall time of the batch: still before its request
        (made once this commits), and later than its own claim, so a reply is never taken for an earlier ask."""
        at = max(a for _, a in items).isoformat()
        keys = list(dict.fromkeys(k for k, _ in items))
        claimed: set[str] = set()
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i:i + _CHUNK]
            claimed.update(k for (k,) in self.db.execute(
                "UPDATE notifications SET status='sending', sending_at=?, updated_at=? "
                f"WHERE key IN ({','.join('?' * len(chunk))}) AND status='queued' RETURNING key", (at, at, *chunk)))
        out = []
        for k, _ in items:
            out.append(k in claimed)
            claimed.discard(k)  # a key given twice is claimed once
        return out

    def sent_many(self, items: list[tuple[str, str, datetime]]) -> None:
        """:meth:`sent` for many (key, sid, at), in one ``executemany``."""
        self.db.executemany("UPDATE notifications SET status='sent', sid=?, sent_at=?, updated_at=? WHERE key=?",
                            [(sid, at.isoformat(), at.isoformat(), key) for key, sid, at in items])
        for _, sid, at in items:
            if sid in self._early:  # as sent(): receipts that came first are applied now
                self._apply_early(sid, at)

    def sent(self, key: str, sid: str, at: datetime) -> None:
        """The provider took ``key`` as ``sid``; receipts for ``sid`` that came before are applied now (the most
        advanced of them) and left in :attr:`applied_early` for the receipts' follow-up."""
        self.db.execute("UPDATE notifications SET status='sent', sid=?, sent_at=?, updated_at=? WHERE key=?",
                        (sid, at.isoformat(), at.isoformat(), key))
        if sid in self._early:
            self._apply_early(sid, at)

    def failed(self, key: str, error: str, at: datetime) -> None:
        self.db.execute("UPDATE notifications SET status='failed', error=?, updated_at=? WHERE key=?",
                        (error[:500], at.isoformat(), key))

    def requeue(self, key: str, at: datetime) -> None:
        """A 'sending' row the provider never saw goes back to 'queued'."""
        self.db.execute("UPDATE notifications SET status='queued', updated_at=? WHERE key=? AND status='sending'",
                        (at.isoformat(), key))

    def receipt(self, sid: str, status: Status, error: str, at: datetime, said: str = "") -> Notification | None:
        """A provider's status callback: record it if it moves the notification forward (:attr:`Status.rank`:
        a late or repeated word never moves it back), return the notification it belongs to (its status now).
        For a sid not stored yet it is kept and applied when the sid lands (:meth:`sent`); None then."""
        # read first, write only a move forward: Twilio's "sent" repeats what the sid's record said, and a late word
        # moves nothing (a fan-out's receipts arrive thousands a second; rewriting a row costs three reads)
        row = self.db.execute(f"SELECT rowid, {_SELECT} FROM notifications WHERE sid=? LIMIT 1", (sid,)).fetchone()
        if row is not None:
            n = _row(row[1:])
            if status.rank > n.status.rank:
                self.db.execute("UPDATE notifications SET status=?, error=COALESCE(NULLIF(?, ''), error), "
                                "updated_at=? WHERE rowid=?", (status, error, at.isoformat(), row[0]))
                n.status = status
            return n
        self.db.execute("INSERT INTO early_receipts VALUES (?,?,?,?,?)", (sid, status, error, said, at.isoformat()))
        self._early.add(sid)
        pruned = {s for (s,) in self.db.execute("DELETE FROM early_receipts WHERE at < ? RETURNING sid",
                                                ((at - EARLY_KEEP).isoformat(),)).fetchall()}
        if pruned:  # forget those with no receipt left
            marks = ",".join("?" * len(pruned))
            left = {s for (s,) in self.db.execute(f"SELECT sid FROM early_receipts WHERE sid IN ({marks})",
                                                  list(pruned))}
            self._early -= pruned - left
        return None

    def _apply_early(self, sid: str, at: datetime) -> None:
        early = self.db.execute("SELECT status, error, said FROM early_receipts WHERE sid=? ORDER BY rowid",
                                (sid,)).fetchall()
        if not early:
            return
        self.db.execute("DELETE FROM early_receipts WHERE sid=?", (sid,))
        self._early.discard(sid)
        got = [(_STATUS.get(st, Status.OTHER), error, said) for st, error, said in early]
        best = max(got, key=lambda g: g[0].rank)  # the first of the most advanced
        if best[0].rank > Status.SENT.rank:
            self.db.execute("UPDATE notifications SET status=?, error=COALESCE(NULLIF(?, ''), error), updated_at=? "
                            "WHERE sid=?", (best[0], best[1], at.isoformat(), sid))
        if len(self.applied_early) >= 1000:  # a sid landed by a path with no follow-up (a reconciliation)
            self.applied_early.pop(next(iter(self.applied_early)))
        self.applied_early[sid] = got

    # ---- read ---------------------------------------------------------------------------------------
    def get(self, key: str) -> Notification | None:
        return self._one("key=?", (key,))

    def by_ref(self, reference: str) -> Notification | None:
        """By its ref, or by a prefix of it (Alibaba Cloud's voice OutId holds 15 characters)."""
        if len(reference) >= len(ref("")):
            return self._one("ref=?", (reference,))
        if len(reference) < 12:
            return None
        return self._one("ref>=? AND ref<?", (reference, reference + "g"))

    def by_sid(self, sid: str) -> Notification | None:
        return self._one("sid=?", (sid,))

    def has_sid(self, sid: str) -> bool:
        """Is ``sid`` already some notification's? (A provider lookup must not hand it to another.)"""
        return self.db.execute("SELECT 1 FROM notifications WHERE sid=? LIMIT 1", (sid,)).fetchone() is not None

    def status(self, key: str) -> Status | None:
        row = self.db.execute("SELECT status FROM notifications WHERE key=?", (key,)).fetchone()
        return _STATUS.get(row[0], Status.OTHER) if row else None

    def pending_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM notifications WHERE status IN ('queued', 'sending')").fetchone()[0]

    def pending(self) -> list[Notification]:
        return self._many("status IN ('queued', 'sending') ORDER BY priority DESC, seq", ())

    def all(self) -> list[Notification]:
        return self._many("1 ORDER BY seq", ())

    def for_warning_key(self, warning_key: str) -> list[Notification]:
        return self._many("warning_key=? ORDER BY seq", (warning_key,))

    def for_warning(self, warning_id: str) -> list[Notification]:
        return self._many("warning_id=? ORDER BY seq", (warning_id,))

    def first_to(self, warning_id: str, phone: str) -> Notification | None:
        return self._one("warning_id=? AND phone=? ORDER BY seq", (warning_id, phone))

    def chain_members(self, warning_id: str, origin: str) -> set[str]:
        """Phones told as part of ``origin``'s escalation chain (``reason`` ends with ``:origin``)."""
        rows = self.db.execute("SELECT DISTINCT phone FROM notifications WHERE warning_id=? AND reason LIKE ?",
                               (warning_id, "%:" + origin))
        return {p for (p,) in rows} | {origin}

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
        return [_row(r) for r in rows]
