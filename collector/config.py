"""Where readings are stored and how the collector batches, spools, retries and reports them."""

from __future__ import annotations

import enum
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

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
    timeout_s: float = Field(default=10.0, gt=0)


class InfluxV2Store(BaseModel):
    """InfluxDB 2.x ``/api/v2/write`` through influxdb-client (VictoriaMetrics speaks it too)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["influxdb_v2"]
    url: str = "http://127.0.0.1:8086"
    org: str = "yujing"
    bucket: str = "yujing"
    token: Secret | None = None
    timeout_s: float = Field(default=10.0, gt=0)


StoreConfig = Annotated[Union[SqliteStore, InfluxV1Store, InfluxV2Store], Field(discriminator="type")]


class SpoolFull(enum.StrEnum):
    """What happens when the on-disk spool reaches ``spool_max_readings``."""

    BLOCK = "block"  # stop acknowledging: the broker keeps the rest (nothing lost, intake pauses)
    DROP_OLDEST = "drop_oldest"  # discard the oldest spooled readings, counted and logged


class CollectorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    store: StoreConfig = Field(default_factory=lambda: SqliteStore(type="sqlite"))
    batch_size: int = Field(default=2000, ge=1)  # held: ≤ 2 queued + writes_in_flight + 1 open batches
    flush_interval_s: float = Field(default=0.05, gt=0)
    spool: str = ""  # default: <data_dir>/collector.spool (SQLite: spooled batches + recently seen ids)
    spool_max_readings: int = Field(default=5_000_000, ge=1)
    spool_full: SpoolFull = SpoolFull.BLOCK
    client_id: str = Field(default="yujing-collector", min_length=1)  # fixed: the broker keeps our session
    share_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]+$")  # $share/<group>/...: split load
    receive_maximum: int = Field(default=20_000, ge=1, le=65535)  # unacked messages in flight (MQTT 5 flow control)
    deadletter: bool = True  # publish rejected payloads to {prefix}/deadletter/{reason}
    max_payload_bytes: int = Field(default=1_048_576, ge=64)
    dedup_window_s: float = Field(default=3600.0, gt=0)  # ids remembered this long (scenario seconds)
    dedup_max_ids: int = Field(default=2_000_000, ge=1)
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    replay_chunk: int = Field(default=2_000, ge=1)  # readings per write when draining the spool (memory: ~1 KiB each)
    writes_in_flight: int = Field(default=4, ge=1, le=16)  # direct writes at once (finished in arrival order)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Worker processes on one shared subscription (collector/workers.py): "auto" = one per usable core, except
    # where a second process cannot help or cannot run (SQLite store, embedded demo broker: see its README).
    workers: Literal["auto"] | int = "auto"

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_or_count(cls, v: object) -> object:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 256):
            return v
        raise ValueError(f"'auto' or a number of processes from 1 to 256, not {v!r}")

    @field_validator("workers")
    @classmethod
    def _one_writer_for_sqlite(cls, v: Literal["auto"] | int, info: ValidationInfo) -> Literal["auto"] | int:
        store = info.data.get("store")
        if v != "auto" and v > 1 and isinstance(store, SqliteStore):
            raise ValueError("a SQLite store has one writer: use workers: 1 (or auto), or a database server")
        return v
