"""Where readings are stored and how the collector batches them."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from yujing.config.secrets import Secret


class SqliteStore(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["sqlite"]
    path: str = ""  # default: <data_dir>/readings.sqlite


class InfluxV1Store(BaseModel):
    """InfluxDB 1.x ``/write`` (line protocol)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["influxdb_v1"]
    url: str = "http://127.0.0.1:8086"
    database: str = "yujing"
    username: str | None = None
    password: Secret | None = None


class InfluxV2Store(BaseModel):
    """InfluxDB 2.x ``/api/v2/write`` through influxdb-client (VictoriaMetrics speaks it too)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["influxdb_v2"]
    url: str = "http://127.0.0.1:8086"
    org: str = "yujing"
    bucket: str = "yujing"
    token: Secret | None = None


StoreConfig = Annotated[Union[SqliteStore, InfluxV1Store, InfluxV2Store], Field(discriminator="type")]


class CollectorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    store: StoreConfig = Field(default_factory=lambda: SqliteStore(type="sqlite"))
    batch_size: int = Field(default=5000, ge=1)
    flush_interval_s: float = Field(default=0.05, gt=0)
    spool: str = ""  # default: <data_dir>/collector.spool
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
