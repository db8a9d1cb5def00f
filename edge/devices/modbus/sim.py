"""Simulated Modbus slaves: one server (TCP host:port, or RTU on a pty) answering for many slave ids.

Function codes 1-4 (coils, discrete inputs, holding and input registers).
Values are computed at request time from each slave's value sources on the
scenario clock, encoded exactly as the device's register map says (type,
byte/word order, scale and offset) by :func:`registers_of` — pymodbus's own converter, not the agent's
encoder — so the agent's decoding is checked against an independent path (a byte-order bug that the
agent's encoder and decoder shared would otherwise pass). Faults per slave: hang, garbled, offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import struct
from typing import Any, AsyncIterator

from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.framer.rtu import FramerRTU

from edge.devices.modbus.map import WORDS
from simulators.devices.faults import Fault, source_key
from simulators.devices.place import Place
from simulators.devices.pty import PtyLine
from simulators.devices.values import ValueSource

log = logging.getLogger("yujing.sim.modbus")
_TABLE_OF_FC = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
_DATATYPE = {"int16": ModbusClientMixin.DATATYPE.INT16, "uint16": ModbusClientMixin.DATATYPE.UINT16,
             "int32": ModbusClientMixin.DATATYPE.INT32, "uint32": ModbusClientMixin.DATATYPE.UINT32,
             "float32": ModbusClientMixin.DATATYPE.FLOAT32, "float64": ModbusClientMixin.DATATYPE.FLOAT64}


def registers_of(value: float, type_: str, order: str = "ABCD") -> list[int]:
    """The registers a device holding ``value`` (raw, before scale) serves, by pymodbus's converter.

    pymodbus knows word order (``big``: ABCD, ``little``: words reversed, CDAB); the byte-swapped orders
    (BADC, DCBA) are those with the two bytes of every register swapped. Integers are rounded, unsigned
    ones wrap and signed ones saturate, as a device's firmware storing the value would.
    """
    if type_ == "bool":
        return [1 if value else 0]
    if not type_.startswith("float"):
        bits = 16 * WORDS[type_]
        value = int(round(value))
        value = value % (1 << bits) if type_.startswith("u") else \
            max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, value))
    words = ModbusClientMixin.convert_to_registers(value, _DATATYPE[type_],
                                                   word_order="little" if order in ("CDAB", "DCBA") else "big")
    if order in ("BADC", "DCBA"):
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS as an RTU frame carries it (low byte first), by pymodbus's own (independent) code."""
    return int.from_bytes(FramerRTU.compute_CRC(data).to_bytes(2, "big"), "little")


class SimSlave:
    """One device on the bus: its register map and where each value comes from."""

    def __init__(self, device: Any, sources: dict[str, ValueSource], clock: Any) -> None:
        self.device = device
        self.sources = sources
        self.clock = clock
        self.fault = Fault.NONE
        self.requests = 0

    def _raw(self, reg: Any) -> float:
        src = self.sources.get(source_key(reg.quantity, reg.sensor)) or self.sources.get(reg.quantity)
        v = src.value(self.clock.now()) if src is not None else 0.0
        if reg.type == "bool" or not math.isfinite(v):
            return v
        return (v - reg.offset) / reg.scale

    def words(self, table: str, address: int, count: int) -> list[int] | None:
        """The table's content at address..address+count, or None if any address is unmapped."""
        cells: dict[int, int] = {}
        regs = list(self.device.registers)
        if self.device.timestamp is not None:  # a logger's clock: the scenario time, or a source "device_time"
            regs.append(self.device.timestamp.register())
        for reg in regs:
            if reg.table != table:
                continue
            raw = self._raw(reg) if reg.quantity != "device_time" or "device_time" in self.sources \
                else self.clock.now().timestamp()
            for i, w in enumerate(registers_of(raw, reg.type, reg.order)):
                cells[reg.address + i] = w
        if any(a not in cells for a in range(address, address + count)):
            # a real device answers gaps with zeros only inside its map: outside it, "illegal address"
            mapped = [r for r in regs if r.table == table]
            lo = min((r.address for r in mapped), default=0)
            hi = max((r.address + WORDS[r.type] for r in mapped), default=0)
            if address < lo or address + count > hi:
                return None
        return [cells.get(a, 0) for a in range(address, address + count)]

    def answer(self, pdu: bytes) -> bytes:
        """The response PDU to a request PDU (an exception response when it cannot serve it)."""
        self.requests += 1
        fc = pdu[0]
        if fc not in _TABLE_OF_FC or len(pdu) < 5:
            return bytes([fc | 0x80, 0x01])
        address, count = struct.unpack(">HH", pdu[1:5])
        words = self.words(_TABLE_OF_FC[fc], address, count)
        if words is None:
            return bytes([fc | 0x80, 0x02])
        if fc in (1, 2):
            data = bytearray((count + 7) // 8)
            for i, w in enumerate(words):
                if w:
                    data[i // 8] |= 1 << (i % 8)
            return bytes([fc, len(data)]) + bytes(data)
        return bytes([fc, 2 * count]) + b"".join(w.to_bytes(2, "big") for w in words)


class ModbusSimServer:
    """Serves every slave added to it; ``transport`` is ``tcp`` (host, port) or ``rtu`` (a pty at ``path``)."""

    def __init__(self, transport: str, *, host: str = "127.0.0.1", port: int = 0, path: str = "") -> None:
        self.transport = transport
        self.host, self.port, self.path = host, port, path
        self.slaves: dict[int, SimSlave] = {}
        self.fault = Fault.NONE  # of the whole server
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._pty: PtyLine | None = None
        self._rtu_buf = bytearray()

    def add(self, slave_id: int, slave: SimSlave) -> None:
        self.slaves[slave_id] = slave

    def _fault_for(self, unit: int) -> Fault:
        if self.fault is not Fault.NONE:
            return self.fault
        s = self.slaves.get(unit)
        return s.fault if s else Fault.HANG  # an absent slave is silent

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.transport == "tcp":
            self._server = await asyncio.start_server(self._tcp_conn, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
        else:
            self._pty = PtyLine(self.path)
            asyncio.get_running_loop().add_reader(self._pty.master, self._rtu_readable)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        if self._pty is not None:
            asyncio.get_running_loop().remove_reader(self._pty.master)
            self._pty.close()
            self._pty = None

    async def set_offline(self, offline: bool) -> None:
        """Whole server offline (TCP: refuse connections; RTU: the line goes dead) or back."""
        if offline:
            self.fault = Fault.OFFLINE
            await self.stop()
        else:
            self.fault = Fault.NONE
            await self.start()

    # --- TCP ---------------------------------------------------------------------------------------

    async def _tcp_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _pid, length, unit = struct.unpack(">HHHB", head)
                pdu = await reader.readexactly(length - 1)
                fault = self._fault_for(unit)
                if fault in (Fault.HANG, Fault.OFFLINE):
                    continue
                resp = self.slaves[unit].answer(pdu)
                if fault is Fault.GARBLED:
                    resp = _garble(resp, rtu=False)
                writer.write(struct.pack(">HHHB", tid, 0, len(resp) + 1, unit) + resp)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._conns.discard(writer)
            writer.close()

    # --- RTU ---------------------------------------------------------------------------------------

    def _rtu_readable(self) -> None:
        assert self._pty is not None
        try:
            self._rtu_buf += os.read(self._pty.master, 4096)
        except (BlockingIOError, OSError):
            return
        buf = self._rtu_buf
        while len(buf) >= 8:  # every read request is 8 bytes: id fc addr(2) count(2) crc(2)
            frame = bytes(buf[:8])
            if crc16(frame[:6]) != int.from_bytes(frame[6:8], "little"):
                del buf[0]  # resynchronise on line noise
                continue
            del buf[:8]
            unit = frame[0]
            fault = self._fault_for(unit)
            if fault in (Fault.HANG, Fault.OFFLINE):
                continue
            resp = bytes([unit]) + self.slaves[unit].answer(frame[1:6])
            resp += crc16(resp).to_bytes(2, "little")
            if fault is Fault.GARBLED:
                resp = _garble(resp, rtu=True)
            self._pty.write(resp)


def _garble(resp: bytes, rtu: bool) -> bytes:
    """Corrupt a response so that a careful master must notice: on RTU a flipped bit (the CRC no longer
    matches) or a wrong byte count; on TCP (whose own checksums hide line noise) a wrong byte count."""
    b = bytearray(resp)
    count_at = 2 if rtu else 1  # RTU responses start with the slave id
    if rtu and random.random() < 0.5 and len(b) > 4:
        b[3] ^= 0x10
    elif len(b) > count_at:
        b[count_at] = (b[count_at] + 2) & 0xFF
    return bytes(b)


@contextlib.asynccontextmanager
async def modbus_server(transport: str, **where: Any) -> AsyncIterator[ModbusSimServer]:
    server = ModbusSimServer(transport, **where)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class ModbusBusSim:
    """The simulator of one Modbus endpoint (a TCP host:port or a serial port) and its slaves."""

    def __init__(self, first: Any) -> None:
        if first.type == "modbus_tcp":
            self.server = ModbusSimServer("tcp", host=first.host, port=first.port)
        else:
            self.server = ModbusSimServer("rtu", path=first.port)
        self.by_device: dict[str, SimSlave] = {}

    def add(self, device: Any, sources: dict[str, ValueSource], clock: Any) -> None:
        slave = SimSlave(device, sources, clock)
        self.by_device[device.id] = slave
        self.server.add(device.slave, slave)

    async def set_fault(self, device_id: str, fault: Fault) -> None:
        if len(self.by_device) == 1:  # the only device: offline means the endpoint goes away
            going, gone = fault is Fault.OFFLINE, self.server.fault is Fault.OFFLINE
            if going != gone:
                await self.server.set_offline(going)
        self.by_device[device_id].fault = fault  # on a shared bus an offline slave is a silent one

    async def __aenter__(self) -> "ModbusBusSim":
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()


def _bus(dev: Any) -> tuple:
    return (dev.type, dev.host, dev.port) if dev.type == "modbus_tcp" else (dev.type, dev.port)


def simulate(devices: list[Any], sources: dict[str, dict[str, ValueSource]], clock: Any,
             mqtt: Any = None) -> dict[str, ModbusBusSim]:
    """Devices that share a TCP host:port or a serial port share one simulated server answering each slave
    id, as a real RS-485 bus or a Modbus gateway does."""
    buses: dict[tuple, ModbusBusSim] = {}
    out: dict[str, ModbusBusSim] = {}
    for dev in devices:
        sim = buses.setdefault(_bus(dev), ModbusBusSim(dev))
        sim.add(dev, sources.get(dev.id, {}), clock)
        out[dev.id] = sim
    return out


def relocate(dev: Any, place: Place) -> Any:
    """On the place's own loopback port or pty; devices that shared an endpoint still share one."""
    if dev.type == "modbus_tcp":
        return dev.model_copy(update={"host": "127.0.0.1", "port": place.port("tcp", dev.host, dev.port)})
    return dev.model_copy(update={"port": place.tty(dev.port)})
