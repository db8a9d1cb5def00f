"""Gateways and the devices they read. One reader type per ``type:``."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class _Device(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    site: str
    interval_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=3.0, gt=0)


class ModbusRegister(BaseModel):
    """One value in a Modbus register map."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quantity: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    unit: str = ""
    table: Literal["holding", "input", "coil", "discrete"] = "holding"
    address: int = Field(ge=0, le=65535)
    type: Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bool"] = "uint16"
    order: Literal["ABCD", "DCBA", "BADC", "CDAB"] = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    min: float | None = None  # the sensor's physical range: outside it a reading is flagged out-of-range
    max: float | None = None


class ModbusTcpDevice(_Device):
    type: Literal["modbus_tcp"]
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    slave: int = Field(default=1, ge=0, le=247)
    registers: list[ModbusRegister] = Field(min_length=1)


DeviceConfig = Annotated[Union[ModbusTcpDevice], Field(discriminator="type")]


class GatewayConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str = ""
    outbox: str = ""  # SQLite outbox path; default: <data_dir>/edge-<id>.outbox
    devices: list[DeviceConfig] = Field(default_factory=list)
