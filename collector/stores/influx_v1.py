"""InfluxDB 1.x: ``POST /write?db=..&precision=ns`` with line protocol over HTTP/1.1 (yujing/http.py).

A point with the same measurement, tags and time overwrites the earlier one, so a
re-sent reading is stored once even if it is written twice.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from collector.config import InfluxV1Store
from collector.rows import Row
from collector.stores.base import BatchRejected, register
from collector.stores.lineproto import lines, reading_from_row, ts_ns
from yujing.errors import StoreError
from yujing.http import Client, HttpError
from yujing.model import Reading


class InfluxV1:
    def __init__(self, cfg: InfluxV1Store, _config: Any = None) -> None:
        self.cfg = cfg
        self._http: Client | None = None
        self._db_ready = False

    async def __aenter__(self) -> "InfluxV1":
        parts = urlsplit(self.cfg.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StoreError(f"influxdb {self.cfg.url}: not an http(s) URL")
        self._base = self.cfg.url.rstrip("/")  # a path prefix is kept: a proxy's https://host/influx
        self._auth: dict[str, str] = {}
        if self.cfg.username:
            password = self.cfg.password.get() if self.cfg.password else ""
            token = base64.b64encode(f"{self.cfg.username}:{password}".encode()).decode()
            self._auth = {"Authorization": f"Basic {token}"}
        self._http = Client(self.cfg.timeout_s, user_agent="yujing-collector")  # as many connections as writes in flight
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def _post(self, path: str, body: bytes, params: dict[str, str] | None = None,
                    form: bool = False) -> tuple[int, str]:
        assert self._http is not None, "use the store as `async with`"
        url = self._base + path + (f"?{urlencode(params)}" if params else "")
        kind = "application/x-www-form-urlencoded" if form else "text/plain; charset=utf-8"
        try:
            status, answer = await self._http.post(url, body, {**self._auth, "Content-Type": kind})
        except HttpError as e:
            raise StoreError(f"influxdb {self.cfg.url}: {e}") from None
        return status, answer.decode("utf-8", "replace")

    async def _query(self, q: str, params: dict[str, str] | None = None) -> tuple[int, str]:
        return await self._post("/query", urlencode({"q": q}).encode(), params, form=True)

    async def _ensure_db(self) -> None:
        status, text = await self._query(f'CREATE DATABASE "{self.cfg.database}"')
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
        status, text = await self._post("/write", body, params)
        if status == 404 and "database not found" in text:
            await self._ensure_db()
            status, text = await self._post("/write", body, params)
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
        status, text = await self._query(q, {"db": self.cfg.database, "epoch": "ns"})
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
