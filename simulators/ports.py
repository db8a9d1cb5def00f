"""Free loopback ports for simulated devices (drills) and the test servers."""

from __future__ import annotations

import os
import random
import socket


def _port_range() -> range:
    lo, _, hi = os.environ.get("YUJING_FREE_PORTS", "20000-32767").partition("-")
    return range(int(lo), int(hi) + 1)


_PORTS = _port_range()
_next_port = _PORTS.start + random.randrange(len(_PORTS))


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(n: int = 1) -> int:
    """The first of ``n`` consecutive loopback ports that are free now and were not handed out before.

    Ports come from YUJING_FREE_PORTS (default 20000-32767), below Linux's ephemeral range (32768-60999),
    so a client's outgoing connection can never take one between this check and the server's bind (the
    race the kernel's port 0 has when the port is only used later). Within a process they are handed out
    in turn, so two simulated devices never get the same one; tests/run.sh gives its two concurrent
    pytest lanes disjoint ranges.
    """
    global _next_port
    for _ in range(len(_PORTS)):
        first = _next_port
        if first + n - 1 > _PORTS[-1]:
            first = _PORTS.start
        _next_port = first + n
        if all(_bindable(p) for p in range(first, first + n)):
            return first
    raise OSError(f"no {n} consecutive free ports in {_PORTS}")
