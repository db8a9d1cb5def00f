"""The CAP documents, each kept as it was built (an Update after a restart still references the message
before it), with whether the broker took it."""

from __future__ import annotations

from typing import NamedTuple

from alerts.nflog.db import LogDb

SCHEMA = """
CREATE TABLE IF NOT EXISTS caps (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, identifier TEXT NOT NULL UNIQUE, warning_id TEXT NOT NULL,
  hazard TEXT NOT NULL, site TEXT NOT NULL, xml TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS caps_group ON caps(hazard, site);
"""


class KeptCap(NamedTuple):
    identifier: str
    hazard: str
    site: str  # the thread: a site, or the area of a warning from above (alerts.cap.thread)
    xml: str


class CapArchive:
    def __init__(self, db: LogDb) -> None:
        self.db = db

    def keep(self, warning_id: str, hazard: str, thread: str, identifier: str, xml: str,
             published: bool = False) -> None:
        """Keep a document unless one of that identifier is kept already."""
        self.db.execute("INSERT OR IGNORE INTO caps(identifier, warning_id, hazard, site, xml, published)"
                        " VALUES (?,?,?,?,?,?)", (identifier, warning_id, hazard, thread, xml, int(published)))

    def get(self, identifier: str) -> str | None:
        row = self.db.execute("SELECT xml FROM caps WHERE identifier=?", (identifier,)).fetchone()
        return row[0] if row else None

    def last_warning(self, hazard: str, thread: str) -> str | None:
        """The warning id of the latest document of (hazard, thread): what the next one references."""
        row = self.db.execute("SELECT warning_id FROM caps WHERE hazard=? AND site=? ORDER BY seq DESC LIMIT 1",
                              (hazard, thread)).fetchone()
        return row[0] if row else None

    def all(self, unpublished: bool = False) -> list[KeptCap]:
        """Oldest first; ``unpublished``: only those the broker has not taken."""
        where = " WHERE published=0" if unpublished else ""
        return [KeptCap(*r) for r in self.db.execute(f"SELECT identifier, hazard, site, xml FROM caps{where} "
                                                      "ORDER BY seq")]

    def published(self, identifier: str) -> None:
        self.db.execute("UPDATE caps SET published=1 WHERE identifier=?", (identifier,))
