"""Provider events already acted on: a webhook request seen before is a replay, and changes nothing.

Twilio's ``X-Twilio-Signature`` covers the URL and the form, not a time nor a nonce: a captured, validly signed
request stays valid for ever. What makes each one unique is the provider's own id of the event — an inbound
SMS's ``MessageSid``, a call's ``CallSid`` with the keys pressed, a status callback's sid with its status — so
every id acted on is remembered, durably (a table in the real notification log's SQLite file, which a
restart keeps), and a request carrying one already seen is refused.

Provider-neutral: ``seen(provider, event_id)``; another provider's receipts bring their own ids.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import datetime

from alerts.nflog.db import LogDb

# One statement, run with execute(): executescript() would first commit whatever transaction is open.
SCHEMA = """CREATE TABLE IF NOT EXISTS provider_events (
  provider TEXT NOT NULL, event_id TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (provider, event_id)
) WITHOUT ROWID"""


class ProviderEvents:
    """The provider event ids acted on, in the real notification log's file."""

    def __init__(self, db: LogDb) -> None:
        self.db = db
        self.db.execute(SCHEMA)

    def seen(self, provider: str, event_id: str, at: datetime) -> bool:
        """True if ``event_id`` of ``provider`` was seen before; else remember it (durably, at once) and say False."""
        cur = self.db.execute("INSERT OR IGNORE INTO provider_events VALUES (?,?,?)",
                              (provider, event_id, at.isoformat()))
        return cur.rowcount == 0

    def seen_many(self, items: list[tuple[str, str, datetime]]) -> list[bool]:
        """:meth:`seen` for a turn's (provider, event_id, at), in one statement: True for each seen before (or
        earlier in ``items``), the others remembered."""
        fresh: set[tuple[str, str]] = set()
        for i in range(0, len(items), 300):
            chunk = items[i:i + 300]
            args = [v for p, e, at in chunk for v in (p, e, at.isoformat())]
            fresh.update(self.db.execute("INSERT OR IGNORE INTO provider_events VALUES "
                                         f"{','.join(['(?,?,?)'] * len(chunk))} RETURNING provider, event_id", args))
        out = []
        for p, e, _ in items:
            out.append((p, e) not in fresh)
            fresh.discard((p, e))  # the same id twice in one turn: the second is a replay
        return out

    def forget(self, provider: str, event_id: str) -> None:
        """Acting on the event failed: the provider's retry of it must not look like a replay."""
        self.db.execute("DELETE FROM provider_events WHERE provider=? AND event_id=?", (provider, event_id))

    @contextlib.contextmanager
    def acting_on(self, provider: str, event_id: str, at: datetime) -> Iterator[bool]:
        """``with events.acting_on(p, id, now) as fresh:`` act only if ``fresh``; an exception forgets the id."""
        fresh = not self.seen(provider, event_id, at)
        try:
            yield fresh
        except BaseException:
            if fresh:
                with contextlib.suppress(sqlite3.Error):
                    self.forget(provider, event_id)
            raise
