"""Modbus decoding and reading, against the simulator over real TCP and over a pty pair (RTU)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from itertools import product

import pytest
from hypothesis import given
from hypothesis import strategies as st
from servers import free_port

from edge.devices import make_reader
from edge.devices.modbus import map as modbus_map
from edge.devices.modbus.config import ModbusRegister, ModbusRtuDevice, ModbusTcpDevice
from edge.devices.modbus.map import decode, encode, plan
from edge.devices.modbus.sim import registers_of
from edge.devices.reader import ReaderContext
from simulators.devices import Fault, simulate_devices
from simulators.devices.faults import source_key
from simulators.devices.values import Constant, Manual
from yujing.clock import Clock
from yujing.errors import DeviceError

TYPES = ["int16", "uint16", "int32", "uint32", "float32", "float64"]
ORDERS = ["ABCD", "DCBA", "BADC", "CDAB"]
# a value each type can hold exactly, with every byte different so a swap cannot go unnoticed
VALUES = {"int16": -12345, "uint16": 0xA1B2, "int32": -123456789, "uint32": 0xA1B2C3D4,
          "float32": -1234.5, "float64": 98765.4321}


@pytest.mark.parametrize(("type_", "order", "words"), [
    ("float32", "ABCD", [0x3FC0, 0x0000]),  # 1.5 = 0x3FC00000
    ("float32", "CDAB", [0x0000, 0x3FC0]),
    ("float32", "BADC", [0xC03F, 0x0000]),
    ("float32", "DCBA", [0x0000, 0xC03F]),
    ("uint32", "ABCD", [0x0102, 0x0304]),  # 0x01020304 = 16909060
    ("uint32", "CDAB", [0x0304, 0x0102]),
    ("uint32", "BADC", [0x0201, 0x0403]),
    ("uint32", "DCBA", [0x0403, 0x0201]),
    ("int16", "ABCD", [0xFFFE]),  # -2
    ("int16", "BADC", [0xFEFF]),
    ("float64", "ABCD", [0x3FF8, 0, 0, 0]),  # 1.5
    ("float64", "CDAB", [0, 0, 0, 0x3FF8]),
    ("float64", "DCBA", [0, 0, 0, 0xF83F]),
    ("float64", "BADC", [0xF83F, 0, 0, 0]),
])
def test_byte_and_word_orders_decode_known_layouts(type_, order, words):
    expected = {"float32": 1.5, "uint32": 16909060, "int16": -2, "float64": 1.5}[type_]
    reg = ModbusRegister(quantity="x", address=0, type=type_, order=order)
    assert decode(reg, words) == expected
    assert encode(expected, type_, order) == words


def test_scale_and_offset_apply_after_decoding():
    reg = ModbusRegister(quantity="level_m", address=0, type="uint16", scale=0.01, offset=-5.0)
    assert decode(reg, [1234]) == pytest.approx(7.34)


def test_contiguous_registers_are_read_in_one_request_and_gaps_split_requests():
    regs = [ModbusRegister(quantity="a", address=0, type="float32"),
            ModbusRegister(quantity="b", address=2, type="uint16"),
            ModbusRegister(quantity="c", address=10, type="int16"),
            ModbusRegister(quantity="d", address=0, table="input", type="uint16")]
    reqs = plan(regs)
    assert [(r.table, r.address, r.count) for r in reqs] == [("holding", 0, 3), ("holding", 10, 1), ("input", 0, 1)]
    assert [(r.address, r.count) for r in plan(regs, max_gap=8) if r.table == "holding"] == [(0, 11)]


def every_type_and_order() -> list[dict]:
    regs, addr = [], 0
    for type_, order in product(TYPES, ORDERS):
        regs.append({"quantity": "v", "sensor": f"{type_}_{order}", "table": "holding", "address": addr,
                     "type": type_, "order": order})
        addr += {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}[type_]
    regs.append({"quantity": "v", "sensor": "scaled", "table": "input", "address": 0, "type": "int32",
                 "order": "CDAB", "scale": 0.001, "offset": 100})
    regs.append({"quantity": "v", "sensor": "coil", "table": "coil", "address": 3, "type": "bool"})
    return regs


def every_source() -> dict:
    srcs = {source_key("v", f"{t}_{o}"): Constant(VALUES[t]) for t, o in product(TYPES, ORDERS)}
    srcs[source_key("v", "scaled")] = Constant(87.654)
    srcs[source_key("v", "coil")] = Constant(1)
    return srcs


def check_every_value(samples) -> None:
    got = {s.sensor: s.value for s in samples}
    for t, o in product(TYPES, ORDERS):
        want = VALUES[t]
        assert got[f"{t}_{o}"] == (pytest.approx(want) if t == "float32" else want), f"{t} {o}"
    assert got["scaled"] == pytest.approx(87.654)
    assert got["coil"] == 1.0


async def test_every_type_and_byte_order_decodes_over_modbus_tcp_in_one_request_per_table():
    dev = ModbusTcpDevice.model_validate({"id": "all", "type": "modbus_tcp", "site": "S", "port": free_port(),
                                          "registers": every_type_and_order()})
    clock = Clock()
    async with simulate_devices([dev], {"all": every_source()}, clock) as sims:
        async with make_reader(dev, ReaderContext(clock)) as reader:
            check_every_value(await reader.read())
        assert sims.sim("all").by_device["all"].requests == 3  # holding (all 24 values), input, coil


async def test_every_type_and_byte_order_decodes_over_modbus_rtu_on_a_pty_with_two_slaves_on_one_bus(tmp_path):
    port = str(tmp_path / "ttyRS485")
    devs = [ModbusRtuDevice.model_validate({"id": f"d{i}", "type": "modbus_rtu", "site": "S", "port": port,
                                            "baudrate": 19200, "slave": i, "timeout_s": 1,
                                            "registers": every_type_and_order()}) for i in (1, 2)]
    clock = Clock()
    ctx = ReaderContext(clock)
    async with simulate_devices(devs, {d.id: every_source() for d in devs}, clock):
        readers = [make_reader(d, ctx) for d in devs]
        assert readers[0].bus is readers[1].bus  # one client and one lock per serial port
        for r in readers:
            async with r:
                check_every_value(await r.read())


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
async def test_a_hung_garbling_or_vanished_slave_raises_a_device_error_and_the_reader_recovers(tmp_path, transport):
    common = {"id": "g", "site": "S", "timeout_s": 0.3, "registers": [{"quantity": "v", "address": 0}]}
    if transport == "tcp":
        dev = ModbusTcpDevice.model_validate(common | {"type": "modbus_tcp", "port": free_port()})
    else:
        dev = ModbusRtuDevice.model_validate(common | {"type": "modbus_rtu", "port": str(tmp_path / "ttyS9")})
    clock = Clock()
    async with simulate_devices([dev], {"g": {"v": Constant(7)}}, clock) as sims:
        async with make_reader(dev, ReaderContext(clock)) as reader:
            assert [s.value for s in await reader.read()] == [7]
            for fault in (Fault.HANG, Fault.GARBLED, Fault.OFFLINE):
                await sims.fault(fault, "g")
                with pytest.raises(DeviceError, match="device g"):
                    await reader.read()
                await sims.fault(Fault.NONE, "g")
                assert [s.value for s in await reader.read()] == [7], f"recovers after {fault}"


def test_nan_from_a_float_register_passes_through_for_flagging():
    reg = ModbusRegister(quantity="x", address=0, type="float32", scale=2)
    assert math.isnan(decode(reg, encode(math.nan, "float32")))


@given(st.sampled_from(TYPES), st.sampled_from(ORDERS), st.data())
def test_any_value_a_type_holds_round_trips_through_every_order(type_, order, data):
    bits = {"int16": 16, "uint16": 16, "int32": 32, "uint32": 32}.get(type_)
    if bits is None:
        value = data.draw(st.floats(allow_nan=False, allow_infinity=False, width=32 if type_ == "float32" else 64))
    elif type_.startswith("u"):
        value = data.draw(st.integers(0, 2 ** bits - 1))
    else:
        value = data.draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    reg = ModbusRegister(quantity="x", address=0, type=type_, order=order)
    words = registers_of(value, type_, order)  # pymodbus's converter: independent of the module under test
    assert decode(reg, words) == value
    assert encode(value, type_, order) == words


def test_the_simulators_encoder_matches_the_hand_layouts():
    """The independent encoder the wire tests rely on, against the same hand vectors as the decoder."""
    assert registers_of(1.5, "float32", "BADC") == [0xC03F, 0x0000]
    assert registers_of(16909060, "uint32", "DCBA") == [0x0403, 0x0201]
    assert registers_of(1.5, "float64", "CDAB") == [0, 0, 0, 0x3FF8]
    assert registers_of(-2, "int16", "BADC") == [0xFEFF]


async def test_a_byte_order_bug_shared_by_encoder_and_decoder_fails_the_wire_test(monkeypatch):
    """CDAB and BADC swapped in both directions (a symmetric bug) would pass an encode→decode round trip;
    over the wire against the simulator's independent encoding it is caught."""
    right = modbus_map._arrange
    swapped = {"CDAB": "BADC", "BADC": "CDAB"}
    monkeypatch.setattr(modbus_map, "_arrange", lambda words, order: right(words, swapped.get(order, order)))
    reg = ModbusRegister(quantity="x", address=0, type="uint32", order="CDAB")
    assert decode(reg, encode(0xA1B2C3D4, "uint32", "CDAB")) == 0xA1B2C3D4  # the round trip cannot see it
    dev = ModbusTcpDevice.model_validate({"id": "all", "type": "modbus_tcp", "site": "S", "port": free_port(),
                                          "registers": every_type_and_order()})
    clock = Clock()
    async with simulate_devices([dev], {"all": every_source()}, clock):
        async with make_reader(dev, ReaderContext(clock)) as reader:
            with pytest.raises(AssertionError, match="(CDAB|BADC)"):
                check_every_value(await reader.read())


async def test_a_logger_clock_register_stamps_its_values_unless_the_clock_is_far_off():
    dev = ModbusTcpDevice.model_validate({"id": "lg", "type": "modbus_tcp", "site": "S", "port": free_port(),
                                          "registers": [{"quantity": "v", "address": 0}],
                                          "timestamp": {"address": 10, "order": "CDAB", "max_skew_s": 3600}})
    clock = Clock(speed=60, start=datetime(2026, 7, 14, 3, 0, tzinfo=timezone.utc))
    logger_time = Manual(datetime(2026, 7, 14, 2, 55, tzinfo=timezone.utc).timestamp())
    async with simulate_devices([dev], {"lg": {"v": Constant(7), "device_time": logger_time}}, clock):
        async with make_reader(dev, ReaderContext(clock)) as reader:
            [s] = await reader.read()
            assert s.ts == datetime(2026, 7, 14, 2, 55, tzinfo=timezone.utc)  # five minutes old: its own time
            logger_time.set(0)  # a logger after a flat battery, back in 1970
            [s] = await reader.read()
            assert s.ts is None  # the poller stamps it with the gateway's time
