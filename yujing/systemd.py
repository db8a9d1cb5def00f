"""Tell systemd how we are: ``sd_notify`` over ``$NOTIFY_SOCKET``, and a watchdog that pings from the event loop.

    notify("READY=1", "STATUS=running edge")   # False (and nothing sent) outside systemd
    await supervise(rt.stop, "edge")           # READY=1, WATCHDOG=1 every WatchdogSec/2, STOPPING=1

The watchdog pings from an asyncio task, so a ping proves the event loop still
turns: a part that blocks the loop (a stuck C call, a busy loop) stops the pings
and systemd kills and restarts the process (``WatchdogSec=`` with ``Restart=always``).
No libsystemd: the protocol is one datagram of ``KEY=value`` lines.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("yujing.systemd")


def _address() -> str | None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return None
    if path.startswith("@"):  # abstract namespace: the leading '@' stands for a NUL byte
        return "\0" + path[1:]
    if path.startswith("/"):
        return path
    return None  # vsock: and other transports are not used by the units we ship


def notify(*states: str) -> bool:
    """Send ``states`` (``"READY=1"``, ``"STATUS=..."``) to the service manager; False when not under systemd.

    Never raises: a service manager that went away must not take the service with it.
    """
    addr = _address()
    if addr is None:
        return False
    msg = "\n".join(states).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(msg, addr)
    except OSError as exc:
        log.warning("sd_notify failed", extra={"kv": {"socket": os.environ.get("NOTIFY_SOCKET"), "error": str(exc)}})
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (systemd's advice), or None when no watchdog is asked of us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


async def supervise(stop: asyncio.Event, status: str = "") -> None:
    """Run beside the parts (in their TaskGroup): READY=1 now, WATCHDOG=1 until ``stop``, then STOPPING=1.

    Runs in real time, not on the scenario clock: WatchdogSec is wall-clock.
    """
    notify("READY=1", *([f"STATUS={status}"] if status else []), f"MAINPID={os.getpid()}")
    interval = watchdog_interval_s()
    try:
        while not stop.is_set():
            if interval is None:
                await stop.wait()
                break
            notify("WATCHDOG=1")
            try:
                async with asyncio.timeout(interval):
                    await stop.wait()
            except TimeoutError:
                pass
    finally:
        notify("STOPPING=1", "STATUS=stopping: flushing outbox, spool and notification log")
