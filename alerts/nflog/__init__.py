"""The durable notification log (SQLite, WAL): "was this already sent?" has one answer, here.

One file per kind of warning, in parts, each the only code that touches its tables:

    log.warnings       warnings.py       every warning, recorded before anything is done about it, and how far it got
    log.notifications  notifications.py  the messages and calls: queued → sending → sent, then the provider's receipts
    log.confirmations  chains.py         叫应: who confirmed which warning
    log.timers         chains.py         escalation steps with due times (they resume after a restart)
    log.caps           caps.py           each CAP document as built, and whether the broker took it
    log.timeline       timeline.py       every step as an event with a timestamp
    log.provider_events replays.py       provider event ids acted on (a replayed webhook changes nothing)

Readers (the console, the duty API) open the file read-only; ``progress.py`` is how both count a warning's
delivery from its rows. The words (warning and notification states, channels, tiers) are the StrEnums of ``states.py``. Statements
that must not be split by a crash run in ``log.transaction()``.

Real and drill warnings live in separate files (``alerts.sqlite`` and ``alerts-drill.sqlite``); a log
opened for one refuses the other, so a drill can never be promoted to a real warning.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Self

from alerts.nflog import caps, chains, notifications, timeline, warnings
from alerts.nflog.caps import CapArchive, KeptCap
from alerts.nflog.chains import Confirmations, Timers
from alerts.nflog.db import Checkpointer, LogDb
from alerts.nflog.group import GroupCommit
from alerts.nflog.notifications import Notification, Notifications, ref
from alerts.nflog.replays import ProviderEvents
from alerts.nflog.states import Channel, ChainState, NodeTier, Status, WarningStatus
from alerts.nflog.timeline import Event, Timeline
from alerts.nflog.warnings import WarningRecord

__all__ = ["CapArchive", "ChainState", "Channel", "Confirmations", "Event", "GroupCommit", "KeptCap", "NodeTier",
           "Notification", "NotificationLog", "Notifications", "ProviderEvents", "Status", "Timeline", "Timers",
           "WarningRecord", "WarningStatus", "ref"]

_SCHEMAS = [warnings.SCHEMA, notifications.SCHEMA, chains.SCHEMA, caps.SCHEMA, timeline.SCHEMA]


class NotificationLog:
    """One SQLite file and its parts; use as a context manager. ``drill`` says which kind of warning it may hold."""

    warnings: WarningRecord
    notifications: Notifications
    confirmations: Confirmations
    timers: Timers
    caps: CapArchive
    timeline: Timeline
    provider_events: ProviderEvents
    group: GroupCommit  # writes of many coroutines, one commit per turn of the event loop (a fan-out's steps)

    def __init__(self, path: Path | str, drill: bool = False) -> None:
        self.path = Path(path)
        self.drill = drill
        self._db: LogDb | None = None

    def __enter__(self) -> Self:
        db = self._db = LogDb(self.path, self.drill, _SCHEMAS)
        self._checkpointer = Checkpointer(self.path)
        self.warnings = WarningRecord(db, self.drill)
        self.notifications = Notifications(db)
        self.confirmations = Confirmations(db)
        self.timers = Timers(db)
        self.caps = CapArchive(db)
        self.timeline = Timeline(db)
        self.provider_events = ProviderEvents(db)
        self.group = GroupCommit(db)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._db is not None:
            self._checkpointer.close()
            self._db.close()
            self._db = None

    async def checkpoint(self) -> None:
        """The WAL into the database file, in a thread of its own (the log's commits never do it: db.py).
        The service calls it every few seconds; a log left open without it keeps growing its WAL until closed."""
        await self._checkpointer.run()

    # ---- a fan-out's hot writes, for ``group.many`` (one call per turn for every worker's and callback's item) ----
    def record_sent(self, items: list[tuple[Notification, str, datetime]]) -> list[None]:
        """Each (notification, sid, at): its sid and its ``<channel>-sent`` event, committed together."""
        self.notifications.sent_many([(n.key, sid, at) for n, sid, at in items])
        for n, sid, at in items:
            self.timeline.add(at, n.warning_id, n.phone, f"{n.channel}-sent", {"sid": sid, "attempt": n.attempt})
        return [None] * len(items)

    def record_receipts(self, items: list[tuple[str, str, Status, str, datetime]]) -> list[Notification | None]:
        """Each (sid, what the provider said, its status, error, at): the status and its ``<channel>-<said>``
        event; the notification it is about (None if the sid is not ours)."""
        out: list[Notification | None] = []
        for sid, said, status, error, at in items:
            n = self.notifications.receipt(sid, status, error, at, said)
            if n is not None:
                self.timeline.add(at, n.warning_id, n.phone, f"{n.channel}-{said}", {"sid": sid, "error": error})
            out.append(n)
        return out

    def record_receipts_once(self, items: list[tuple[str, str, str, str, Status, str, datetime]]
                             ) -> list[tuple[bool, Notification | None]]:
        """Each (provider, event id, sid, what the provider said, its status, error, at): its event id remembered
        (:meth:`ProviderEvents.seen_many`) and, if new, its receipt recorded — in one write, so a callback takes
        one turn of the group commit, not two. (replayed, the notification) each."""
        seen = self.provider_events.seen_many([(p, e, at) for p, e, _, _, _, _, at in items])
        fresh = [item[2:] for item, replayed in zip(items, seen, strict=True) if not replayed]
        recorded = iter(self.record_receipts(fresh) if fresh else [])
        return [(True, None) if replayed else (False, next(recorded)) for replayed in seen]

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Everything inside commits together or not at all (see :meth:`LogDb.transaction`)."""
        assert self._db is not None, "notification log is not open"
        return self._db.transaction()
