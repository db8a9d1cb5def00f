"""Gateways and the devices they read. One reader module per ``type:`` (see edge/readers/)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from yujing.config.mqtt import Tls
from yujing.config.secrets import Secret

_ID = r"^[A-Za-z0-9_.\-]+$"
_QUANTITY = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Checks(_Strict):
    """What makes a value suspect: outside the sensor's physical range, or frozen for too long."""

    min: float | None = None  # the sensor's range: outside it a reading is flagged out-of-range
    max: float | None = None
    stuck_after: int | None = Field(default=None, ge=2)  # N identical values in a row: flagged stuck


class _Device(_Strict):
    id: str = Field(min_length=1, max_length=64, pattern=_ID)
    site: str
    interval_s: float = Field(default=60.0, gt=0)  # poll interval (polled kinds) / expected report interval (push)
    timeout_s: float = Field(default=3.0, gt=0)  # one request/response
    retries: int = Field(default=2, ge=0, le=10)  # extra attempts within one poll, with backoff
    backoff_s: float = Field(default=0.5, ge=0)  # first retry delay; doubles each retry
    offline_after: int = Field(default=3, ge=1)  # consecutive failed polls (or silent intervals) before offline


# --- Modbus ----------------------------------------------------------------------------------------

class ModbusRegister(_Checks):
    """One value in a Modbus register map."""

    quantity: str = Field(pattern=_QUANTITY)
    unit: str = ""
    sensor: str = ""  # sensor id suffix when one device has several values of one quantity (e.g. "x", "y")
    table: Literal["holding", "input", "coil", "discrete"] = "holding"
    address: int = Field(ge=0, le=65535)
    type: Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bool"] = "uint16"
    order: Literal["ABCD", "DCBA", "BADC", "CDAB"] = "ABCD"
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _bits_are_bools(self) -> "ModbusRegister":
        if (self.table in ("coil", "discrete")) != (self.type == "bool"):
            raise ValueError("coil/discrete tables hold type bool, and bool lives only in them")
        return self


class ModbusClock(_Strict):
    """Where a logger keeps the time of its values: Unix seconds (uint32) in two registers."""

    table: Literal["holding", "input"] = "holding"
    address: int = Field(ge=0, le=65534)
    order: Literal["ABCD", "DCBA", "BADC", "CDAB"] = "ABCD"
    max_skew_s: float = Field(default=86400.0, gt=0)  # further from the gateway's clock: not trusted

    def register(self) -> ModbusRegister:
        return ModbusRegister(quantity="device_time", table=self.table, address=self.address, type="uint32",
                              order=self.order)


class _Modbus(_Device):
    slave: int = Field(default=1, ge=0, le=247)
    registers: list[ModbusRegister] = Field(min_length=1)
    max_gap: int = Field(default=0, ge=0, le=100)  # read across gaps of up to this many unused registers
    timestamp: ModbusClock | None = None  # the device's own time for its values; else the gateway's poll time


class ModbusTcpDevice(_Modbus):
    type: Literal["modbus_tcp"]
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)


class _SerialLine(_Strict):
    port: str  # device path, e.g. /dev/ttyS1 or /dev/serial/by-id/...
    baudrate: int = 9600
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1


class ModbusRtuDevice(_Modbus, _SerialLine):
    """RS-485: several slave ids on one ``port`` share the bus; requests on a bus are serialised."""

    type: Literal["modbus_rtu"]


# --- Serial ASCII ----------------------------------------------------------------------------------

class AsciiField(_Checks):
    quantity: str = Field(pattern=_QUANTITY)
    key: str | int  # regex: the named group; delimiter: the 0-based column
    unit: str = ""
    sensor: str = ""
    scale: float = 1.0
    offset: float = 0.0


class SerialAsciiDevice(_Device, _SerialLine):
    """A line-oriented instrument: each line parsed by ``pattern`` (named groups) or ``delimiter``."""

    type: Literal["serial_ascii"]
    request: str | None = None  # sent each poll (e.g. "R\r\n"); None: the instrument streams lines by itself
    pattern: str | None = None
    delimiter: str | None = None
    encoding: str = "ascii"
    # a longer line (a stuck transmitter, a baud-rate mismatch: no newline for ever) is discarded and counted
    max_line_bytes: int = Field(default=4096, ge=16, le=1_048_576)
    fields: list[AsciiField] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_parser(self) -> "SerialAsciiDevice":
        if (self.pattern is None) == (self.delimiter is None):
            raise ValueError("give exactly one of 'pattern' (a regex with named groups) or 'delimiter'")
        return self


# --- SL 651-2014 -----------------------------------------------------------------------------------

class Sl651Element(_Checks):
    quantity: str = Field(pattern=_QUANTITY)
    unit: str = ""


def _default_elements() -> dict[str, Sl651Element]:
    return {
        "20": Sl651Element(quantity="rain_mm", unit="mm"),
        "26": Sl651Element(quantity="rain_count_mm", unit="mm"),
        "39": Sl651Element(quantity="level_m", unit="m"),
    }


class Sl651Device(_Device):
    """An SL 651-2014 RTU that pushes reports; the gateway parses, checks CRC and replies."""

    type: Literal["sl651"]
    station: str = Field(pattern=r"^[0-9]{10}$")  # 5-byte BCD station address, as 10 digits
    transport: Literal["serial", "tcp"] = "serial"
    port: str = ""  # serial: device path
    baudrate: int = 9600
    listen_host: str = "127.0.0.1"  # tcp: the RTU dials in to this gateway
    listen_port: int = Field(default=0, ge=0, le=65535)
    elements: dict[str, Sl651Element] = Field(default_factory=_default_elements)  # hex element id → quantity
    reply: bool = True  # answer every report as the protocol requires
    interval_s: float = Field(default=300.0, gt=0)  # the RTU's report interval; silence past it counts

    @model_validator(mode="after")
    def _transport(self) -> "Sl651Device":
        if self.transport == "serial" and not self.port:
            raise ValueError("transport serial needs 'port'")
        if self.transport == "tcp" and not self.listen_port:
            raise ValueError("transport tcp needs 'listen_port'")
        return self


# --- MQTT sources ----------------------------------------------------------------------------------

class MqttField(_Checks):
    """One reading from a JSON message: ``value`` and ``meta`` values are dotted paths into it."""

    quantity: str = Field(pattern=_QUANTITY)
    value: str
    unit: str = ""
    sensor: str = ""
    match: dict[str, str] = Field(default_factory=dict)  # only messages whose path equals this value
    meta: dict[str, str] = Field(default_factory=dict)  # meta key → path


class MqttBroker(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: Secret | None = None


class MqttSourceDevice(_Device):
    """Third-party sensors and fire cameras that publish JSON; silence is normal (no detection)."""

    type: Literal["mqtt"]
    topic: str
    broker: MqttBroker | None = None  # None: the gateway's uplink broker (mqtt: section)
    ts: str | None = None  # path of the device's ISO-8601 timestamp, if it sends one
    fields: list[MqttField] = Field(min_length=1)


DeviceConfig = Annotated[
    Union[ModbusTcpDevice, ModbusRtuDevice, SerialAsciiDevice, Sl651Device, MqttSourceDevice],
    Field(discriminator="type"),
]


# --- The gateway -----------------------------------------------------------------------------------

class Uplink(_Strict):
    """How the outbox drains to the broker."""

    username: str | None = None  # per-gateway credentials (override mqtt.username)
    password: Secret | None = None
    tls: Tls | None = None  # per-gateway TLS (e.g. this gateway's client certificate); overrides mqtt.tls
    batch: int = Field(default=500, ge=1, le=10_000)  # readings per published message at most
    rate_per_s: float = Field(default=2000.0, gt=0)  # drain rate bound (readings per scenario second)
    inflight: int = Field(default=8, ge=1, le=1000)  # messages awaiting PUBACK at once
    publish_timeout_s: float = Field(default=10.0, gt=0)  # no PUBACK by then: the link is deemed down
    reconnect_s: float = Field(default=1.0, gt=0)  # first reconnect delay; doubles up to reconnect_max_s
    reconnect_max_s: float = Field(default=60.0, gt=0)


class GatewayConfig(_Strict):
    id: str = Field(min_length=1, max_length=64, pattern=_ID)
    name: str = ""
    outbox: str = ""  # SQLite outbox path; default: <data_dir>/edge-<id>.outbox
    outbox_limit: int = Field(default=1_000_000, ge=10)  # readings held at most
    outbox_when_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    heartbeat_s: float = Field(default=60.0, gt=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)  # /metrics and /health of this gateway
    uplink: Uplink = Field(default_factory=Uplink)
    devices: list[DeviceConfig] = Field(default_factory=list)
