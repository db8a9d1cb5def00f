"""Modbus TCP and RTU devices: a register map, read in as few requests as the spec allows."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from edge.devices.base import QUANTITY, Checks, DeviceBase, SerialLine, Strict

Order = Literal["ABCD", "DCBA", "BADC", "CDAB"]


class ModbusRegister(Checks):
    """One value in a Modbus register map."""

    quantity: str = Field(pattern=QUANTITY)
    unit: str = ""
    sensor: str = ""  # sensor id suffix when one device has several values of one quantity (e.g. "x", "y")
    table: Literal["holding", "input", "coil", "discrete"] = "holding"
    address: int = Field(ge=0, le=65535)
    type: Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bool"] = "uint16"
    order: Order = "ABCD"
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _bits_are_bools(self) -> "ModbusRegister":
        if (self.table in ("coil", "discrete")) != (self.type == "bool"):
            raise ValueError("coil/discrete tables hold type bool, and bool lives only in them")
        return self


class ModbusClock(Strict):
    """Where a logger keeps the time of its values: Unix seconds (uint32) in two registers."""

    table: Literal["holding", "input"] = "holding"
    address: int = Field(ge=0, le=65534)
    order: Order = "ABCD"
    max_skew_s: float = Field(default=86400.0, gt=0)  # further from the gateway's clock: not trusted

    def register(self) -> ModbusRegister:
        return ModbusRegister(quantity="device_time", table=self.table, address=self.address, type="uint32",
                              order=self.order)


class _Modbus(DeviceBase):
    slave: int = Field(default=1, ge=0, le=247)
    registers: list[ModbusRegister] = Field(min_length=1)
    max_gap: int = Field(default=0, ge=0, le=100)  # read across gaps of up to this many unused registers
    timestamp: ModbusClock | None = None  # the device's own time for its values; else the gateway's poll time

    def values(self) -> list[Any]:
        return list(self.registers)


class ModbusTcpDevice(_Modbus):
    type: Literal["modbus_tcp"]
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)


class ModbusRtuDevice(_Modbus, SerialLine):
    """RS-485: several slave ids on one ``port`` share the bus; requests on a bus are serialised."""

    type: Literal["modbus_rtu"]


DEVICES = (ModbusTcpDevice, ModbusRtuDevice)
