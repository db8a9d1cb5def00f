"""Modbus register maps, pure: which requests read a map, and how words become values.

Byte/word orders name where the bytes of a big-endian value ``A B C D`` sit
in the registers, in register order: ``ABCD`` (big-endian, the Modbus norm),
``CDAB`` (words swapped, "little-endian word order"), ``BADC`` (bytes swapped
inside each word), ``DCBA`` (fully little-endian). For 64-bit values the same
two swaps apply to four words.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Sequence

from edge.devices.modbus.config import ModbusRegister

WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4, "bool": 1}
_FMT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f", "float64": ">d"}
MAX_WORDS = 125  # registers in one read request (Modbus spec); coils: 2000
MAX_BITS = 2000


@dataclass(frozen=True)
class Request:
    """One read request covering several map entries."""

    table: str
    address: int
    count: int
    items: tuple[ModbusRegister, ...]


def plan(registers: Sequence[ModbusRegister], max_gap: int = 0) -> list[Request]:
    """Merge contiguous (or nearly: ``max_gap``) entries of one table into as few requests as the spec allows."""
    out: list[Request] = []
    by_table: dict[str, list[ModbusRegister]] = {}
    for r in registers:
        by_table.setdefault(r.table, []).append(r)
    for table, regs in by_table.items():
        limit = MAX_BITS if table in ("coil", "discrete") else MAX_WORDS
        regs.sort(key=lambda r: r.address)
        start = end = -1
        items: list[ModbusRegister] = []
        for r in regs:
            r_end = r.address + WORDS[r.type]
            if items and r.address <= end + max_gap and max(end, r_end) - start <= limit:
                end = max(end, r_end)
                items.append(r)
                continue
            if items:
                out.append(Request(table, start, end - start, tuple(items)))
            start, end, items = r.address, r_end, [r]
        if items:
            out.append(Request(table, start, end - start, tuple(items)))
    return out


def _arrange(words: Sequence[int], order: str) -> bytes:
    """Registers as read → the value's big-endian bytes (the inverse is the same operation)."""
    ws = list(words)
    if order in ("CDAB", "DCBA"):
        ws.reverse()
    raw = b"".join(w.to_bytes(2, "big") for w in ws)
    if order in ("BADC", "DCBA"):
        raw = b"".join(raw[i + 1:i + 2] + raw[i:i + 1] for i in range(0, len(raw), 2))
    return raw


def decode(reg: ModbusRegister, words: Sequence[int]) -> float:
    """The engineering value of one entry: raw × scale + offset (NaN/inf pass through for flagging)."""
    if reg.type == "bool":
        raw: float = 1.0 if words[0] else 0.0
    else:
        if len(words) != WORDS[reg.type]:
            raise ValueError(f"{reg.type} needs {WORDS[reg.type]} registers, got {len(words)}")
        raw = struct.unpack(_FMT[reg.type], _arrange(words, reg.order))[0]
    if not math.isfinite(raw):
        return raw
    return raw * reg.scale + reg.offset


def encode(value: float, type_: str, order: str = "ABCD") -> list[int]:
    """Registers that hold ``value`` (a raw value, before scale): what a device or simulator stores."""
    if type_ == "bool":
        return [1 if value else 0]
    if type_ in ("float32", "float64"):
        raw = struct.pack(_FMT[type_], value)
    else:
        bits = 16 * WORDS[type_]
        iv = int(round(value))
        iv = iv % (1 << bits) if type_.startswith("u") else iv
        if not type_.startswith("u"):
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            iv = max(lo, min(hi, iv))
        raw = struct.pack(_FMT[type_], iv)
    ws = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    # _arrange is its own inverse for these permutations
    arranged = _arrange(ws, order)
    return [int.from_bytes(arranged[i:i + 2], "big") for i in range(0, len(arranged), 2)]


def slice_words(req: Request, reg: ModbusRegister, block: Sequence[int]) -> list[int]:
    i = reg.address - req.address
    return list(block[i:i + WORDS[reg.type]])
