"""The embedded store: one SQLite file, a row per reading, primary key = reading id (re-sends ignored)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from collector.config import SqliteStore
from collector.rows import Row
from collector.stores.base import register
from collector.stores.lineproto import ts_ns
from yujing.errors import StoreError
from yujing.model import Quality, Reading
from yujing.sqlite import Sync, open_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
  id TEXT PRIMARY KEY, site TEXT NOT NULL, sensor TEXT NOT NULL, quantity TEXT NOT NULL,
  value REAL, unit TEXT NOT NULL, ts_ns INTEGER NOT NULL, quality TEXT NOT NULL,
  gateway TEXT NOT NULL, drill INTEGER NOT NULL, meta TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_site_ts ON readings (site, quantity, ts_ns);
"""


class Sqlite:
    def __init__(self, cfg: SqliteStore, config: Any = None) -> None:
        self.path = config.path(cfg.path, "readings.sqlite") if config is not None else Path(cfg.path)
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> "Sqlite":
        self._db = open_db(self.path, _SCHEMA, sync=Sync.NORMAL, what="readings store", threads=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _insert(self, rows: list[tuple]) -> None:
        assert self._db is not None, "use the store as `async with`"
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO readings VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

    async def write(self, batch: list[Reading] | list[Row]) -> None:
        rows = [(r.id, r.site, r.sensor, r.quantity, r.value if r.value == r.value else None, r.unit, ts_ns(r.ts),
                 str(r.quality), r.gateway, int(r.drill), json.dumps(r.meta) if r.meta else "{}") for r in batch]
        async with self._lock:
            try:
                await asyncio.to_thread(self._insert, rows)
            except sqlite3.Error as e:
                raise StoreError(f"sqlite {self.path}: {e}") from None

    async def readings(self, site: str | None = None, quantity: str | None = None,
                       since: datetime | None = None) -> list[Reading]:
        q, args = "SELECT * FROM readings WHERE 1=1", []
        for col, val in (("site", site), ("quantity", quantity)):
            if val is not None:
                q += f" AND {col} = ?"
                args.append(val)
        if since is not None:
            q += " AND ts_ns >= ?"
            args.append(ts_ns(since))
        assert self._db is not None
        async with self._lock:
            rows = self._db.execute(q + " ORDER BY ts_ns", args).fetchall()
        return [Reading(id=r[0], site=r[1], sensor=r[2], quantity=r[3], value=float("nan") if r[4] is None else r[4],
                        unit=r[5], ts=datetime.fromtimestamp(r[6] // 10**9, timezone.utc).replace(
                            microsecond=(r[6] % 10**9) // 1000),
                        quality=Quality(r[7]), gateway=r[8], drill=bool(r[9]), meta=json.loads(r[10]))
                for r in rows]


register("sqlite")(Sqlite)
