"""InfluxDB 2.x ``/api/v2/write`` through influxdb-client's async API (VictoriaMetrics accepts it too).

VictoriaMetrics does not de-duplicate identical samples by default: the collector's own
de-duplication (by reading id) is what keeps a re-sent reading from being stored twice there.
Reading back (:meth:`readings`) is not offered: query the database's own API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from collector.config import InfluxV2Store
from collector.rows import Row
from collector.stores.base import BatchRejected, register
from collector.stores.lineproto import lines
from yujing.errors import StoreError
from yujing.model import Reading


class InfluxV2:
    def __init__(self, cfg: InfluxV2Store, _config: Any = None) -> None:
        self.cfg = cfg
        self._influx: Any = None
        self._api: Any = None

    async def __aenter__(self) -> "InfluxV2":
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        token = self.cfg.token.get() if self.cfg.token else "unused"
        self._influx = InfluxDBClientAsync(url=self.cfg.url, token=token, org=self.cfg.org,
                                           timeout=int(self.cfg.timeout_s * 1000))
        self._api = self._influx.write_api()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._influx is not None:
            await self._influx.close()

    async def write(self, batch: list[Reading] | list[Row]) -> None:
        if not batch:
            return
        from influxdb_client.rest import ApiException

        try:
            await self._api.write(bucket=self.cfg.bucket, org=self.cfg.org, record=lines(batch),
                                  write_precision="ns")
        except ApiException as e:
            if e.status == 400:
                raise BatchRejected(f"influxdb v2 {self.cfg.url}: points refused: {str(e.body)[:300]}") from None
            raise StoreError(f"influxdb v2 {self.cfg.url}: HTTP {e.status} {str(e.body)[:300]}") from None
        except Exception as e:  # aiohttp/OS errors: the database is away
            raise StoreError(f"influxdb v2 {self.cfg.url}: {type(e).__name__}: {e}") from None

    async def readings(self, site: str | None = None, quantity: str | None = None,
                       since: datetime | None = None) -> list[Reading]:
        raise NotImplementedError("read back through the database's own API (e.g. VictoriaMetrics /api/v1/export)")


register("influxdb_v2")(InfluxV2)
