"""InfluxDB 1.x: ``POST /write?db=..&precision=ns`` with line protocol over aiohttp.

A point with the same measurement, tags and time overwrites the earlier one, so a
re-sent reading is stored once even if it is written twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp

from collector.config import InfluxV1Store
from yujing.wire import Row
from collector.stores.base import BatchRejected, register
from collector.stores.lineproto import lines, reading_from_row, ts_ns
from yujing.errors import StoreError
from yujing.model import Reading


class InfluxV1:
    def __init__(self, cfg: InfluxV1Store, _config: Any = None) -> None:
        self.cfg = cfg
        self._session: aiohttp.ClientSession | None = None
        self._db_ready = False

    async def __aenter__(self) -> "InfluxV1":
        auth = None
        if self.cfg.username:
            auth = aiohttp.BasicAuth(self.cfg.username, self.cfg.password.get() if self.cfg.password else "")
        self._session = aiohttp.ClientSession(auth=auth, timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _post(self, path: str, **kw: Any) -> tuple[int, str]:
        assert self._session is not None, "use the store as `async with`"
        try:
            async with self._session.post(f"{self.cfg.url}{path}", **kw) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise StoreError(f"influxdb {self.cfg.url}: {type(e).__name__}: {e}") from None

    async def _ensure_db(self) -> None:
        status, text = await self._post("/query", data={"q": f'CREATE DATABASE "{self.cfg.database}"'})
        if status != 200:
            raise StoreError(f"influxdb {self.cfg.url}: CREATE DATABASE: HTTP {status} {text[:200]}")
        self._db_ready = True

    async def write(self, batch: list[Reading] | list[Row]) -> None:
        if not batch:
            return
        if not self._db_ready:
            await self._ensure_db()
        body = lines(batch).encode()
        params = {"db": self.cfg.database, "precision": "ns"}
        status, text = await self._post("/write", params=params, data=body)
        if status == 404 and "database not found" in text:
            await self._ensure_db()
            status, text = await self._post("/write", params=params, data=body)
        if status == 204:
            return
        if status == 400:
            raise BatchRejected(f"influxdb {self.cfg.url}: points refused: {text[:300]}")
        raise StoreError(f"influxdb {self.cfg.url}: HTTP {status} {text[:300]}")

    async def readings(self, site: str | None = None, quantity: str | None = None,
                       since: datetime | None = None) -> list[Reading]:
        where = []
        if site is not None:
            where.append(f"site = '{site}'")
        if since is not None:
            where.append(f"time >= {ts_ns(since)}")
        q = f'SELECT * FROM {_ident(quantity) if quantity else "/.*/"}'
        if where:
            q += " WHERE " + " AND ".join(where)
        status, text = await self._post("/query", params={"db": self.cfg.database, "epoch": "ns"}, data={"q": q})
        if status != 200:
            raise StoreError(f"influxdb {self.cfg.url}: query: HTTP {status} {text[:200]}")
        import json

        out: list[Reading] = []
        for result in json.loads(text).get("results", []):
            for series in result.get("series", []):
                cols = series["columns"]
                out.extend(reading_from_row(series["name"], dict(zip(cols, v))) for v in series["values"])
        out.sort(key=lambda r: r.ts)
        return out


def _ident(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


register("influxdb_v1")(InfluxV1)
