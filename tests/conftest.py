"""Shared fixtures: real servers on loopback, and waiting for events instead of sleeping."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # the test rigs (testing/), installed or not

from servers import InfluxDB1, Mosquitto, Server, VictoriaMetrics  # noqa: E402

from testing.waits import wait_for  # noqa: E402,F401  (tests import it from here too)

ROOT = Path(__file__).resolve().parent.parent


def _dump_everything(name: str) -> None:
    """What a test about to hit its timeout is waiting on: every thread's stack, and every asyncio task's
    (the main thread of an async test only shows the event loop's select)."""
    print(f"\n==== {name} is near its timeout: threads and asyncio tasks ====", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    for loop in [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]:
        def tasks(loop: asyncio.AbstractEventLoop = loop) -> None:
            for task in asyncio.all_tasks(loop):
                print(f"---- {task!r}", file=sys.stderr)
                task.print_stack(limit=12, file=sys.stderr)
            sys.stderr.flush()
        loop.call_soon_threadsafe(tasks)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    marker = item.get_closest_marker("timeout")
    timeout = float(marker.args[0]) if marker and marker.args else float(item.config.getini("timeout") or 0)
    timer = threading.Timer(max(timeout - 15, timeout * 0.9), _dump_everything, (item.nodeid,)) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer:
            timer.cancel()


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    """One Mosquitto for the session. Tests isolate themselves by topic prefix; never stop it."""
    server = Mosquitto().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def influxdb() -> Iterator[InfluxDB1]:
    """One InfluxDB 1.6.7 for the session. Tests isolate themselves by database name; never stop it."""
    server = InfluxDB1().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def victoria() -> Iterator[VictoriaMetrics]:
    """One VictoriaMetrics for the session. Tests isolate themselves by a tag or measurement."""
    server = VictoriaMetrics().start()
    yield server
    server.cleanup()


@pytest.fixture
def private_server() -> Iterator[Callable[..., Server]]:
    """Start a private server a test may stop, kill and restart: ``private_server(Mosquitto)``."""
    started: list[Server] = []

    def make(kind: type[Server], **kw) -> Server:
        server = kind(**kw).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.cleanup()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix unique to the test, so tests sharing the session broker never see each other."""
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return f"t{int(time.monotonic_ns() % 10**9)}_{name}"


async def terminate(proc: asyncio.subprocess.Process, timeout_s: float = 10.0) -> None:
    """SIGTERM a service started with asyncio.create_subprocess_exec; SIGKILL it if it has not exited in time."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            proc.kill()
