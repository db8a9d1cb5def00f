"""The duty office's silences (maintenance windows), kept in SQLite and handed to alerts as one retained list."""

from __future__ import annotations

import secrets
import threading
from datetime import datetime
from pathlib import Path

from alerts.commands import SilenceList
from alerts.config import Silence
from yujing.sqlite import Sync, open_db

SCHEMA = "CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, payload TEXT NOT NULL, by TEXT NOT NULL)"


class Silences:
    def __init__(self, path: Path | str) -> None:
        # FULL: an operator's silence must not come undone by a power cut
        self.db = open_db(Path(path), SCHEMA, sync=Sync.FULL, what="duty silences", threads=True)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def add(self, s: Silence, by: str) -> Silence:
        s = s.model_copy(update={"id": "s-" + secrets.token_hex(4)})
        with self._lock:
            self.db.execute("INSERT INTO silences(id, payload, by) VALUES (?,?,?)", (s.id, s.model_dump_json(), by))
        return s

    def remove(self, sid: str) -> bool:
        with self._lock:
            return self.db.execute("DELETE FROM silences WHERE id=?", (sid,)).rowcount == 1

    def all(self, now: datetime | None = None) -> list[Silence]:
        rows = self.db.execute("SELECT payload FROM silences ORDER BY rowid").fetchall()
        out = [Silence.model_validate_json(r[0]) for r in rows]
        return [s for s in out if now is None or s.ends > now]

    def as_message(self, now: datetime) -> bytes:
        return SilenceList(silences=self.all(now)).model_dump_json().encode()
