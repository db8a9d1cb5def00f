"""Every core: the collector as worker processes on one MQTT 5 shared subscription, supervised.

    await serve(rt)        # `yujing collector` / `yujing run`: one worker per usable core, or the collector in-process

One Python process is one core (the GIL): at ~40 µs of CPU per single-reading message a collector tops out near
25,000 readings/s whatever the machine. So ``collector.workers`` (default ``auto``) starts that many copies of
:func:`collector.service.serve`, each its own process with its own persistent MQTT session, spool and database
writes, on ``$share/<group>/{prefix}/readings/+``: the broker deals the messages out among them.

- **Nothing acknowledged is lost.** Worker *k* has its own client id and spool, derived from the configured ones
  (worker 1 keeps them as they are, so switching between one process and workers keeps the session and spool
  that were there). While a worker is down, Mosquitto goes on queueing its share in its session; the restarted
  worker gets them (unacknowledged ones are redelivered), exactly as a restarted single collector does.
- **Supervised.** A worker that exits unasked is started again after a backoff (0.5 s doubling to 30 s, back to
  0.5 s once it ran a minute), logged (once a minute per worker) and counted
  (``yujing_collector_worker_restarts_total{worker}``). SIGTERM/SIGINT to the parent (``rt.stop``) stops every
  worker with SIGTERM (each flushes what it holds, like the single collector) and waits for them; if the parent
  itself dies, the workers see their stdin close and stop too.
- **One metrics port.** The workers serve their own registries on loopback ports of their choosing; the parent
  serves ``collector.metrics_port``: ``/metrics`` is every worker's samples with a ``worker`` label (and the
  supervisor's own), ``/health`` is 503 unless every worker is up, subscribed and its database answering.
- **Logs.** Workers log to the same stderr with ``worker=<k>``; each says ``collector subscribed`` as the single
  collector does, and the parent says ``all collector workers subscribed`` once every one has.
- **Fewer workers than before lose nothing.** Mosquitto goes on dealing a share of every message to an absent
  member's session, so a worker an earlier run had (a lower ``workers``, or ``auto`` on fewer cores) would
  strand a share of all new readings in its session, and its spool, for as long as the session lives. At start
  every such worker (its spool file says it ran) is *retired*: started once more under its own client id, it
  drops the shared filter from its session, stores what the session still holds and what its spool holds, has
  the broker forget the session, removes the spool, and exits; the supervisor starts it again until it has.

``auto`` stays one process where a second one cannot help or cannot run: a SQLite store (one writer), the
embedded demo broker (MQTT 3.1.1: no shared subscriptions), a scenario clock (drills), or an ``on_accepted``
hook (it lives in this process). The worker side (``python -m collector.workers``) is at the end of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from collector import service
from collector.config import CollectorConfig, SqliteStore
from yujing import metrics as http_metrics
from yujing.log import Limiter

if TYPE_CHECKING:
    from yujing.compose import Config
    from yujing.runtime import Runtime

log = logging.getLogger("yujing.collector")

FIRST_RESTART_S, MAX_RESTART_S = 0.5, 30.0
STEADY_S = 60.0  # a worker that ran this long restarts after FIRST_RESTART_S again
EX_TEMPFAIL = 75  # a retiring worker's exit before it was done (sysexits.h)
STOP_GRACE_S = 25.0  # within `yujing`'s 30 s stop deadline: then SIGKILL (what it held is redelivered)
_ROOT = str(Path(__file__).resolve().parent.parent)  # where `collector` is importable from, for the workers


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(rt: "Runtime", on_accepted: object = None) -> int:
    """How many processes ``collector.workers`` means here (1: the collector runs in this process)."""
    cfg = rt.config.collector  # type: ignore[attr-defined]
    if on_accepted is not None or rt.drill or rt.clock.speed != 1.0:
        return 1  # an in-process hook, or a scenario clock a child process would not share
    if cfg.workers == "auto":
        if rt.config.mqtt.embedded or isinstance(cfg.store, SqliteStore):
            return 1
        return usable_cores()
    return int(cfg.workers)


def worker_config(cfg: "Config", k: int) -> "Config":
    """Worker ``k``'s (1-based) configuration: its own client id and spool, the shared group, no public port."""
    c = cfg.collector
    spool = cfg.path(c.spool, "collector.spool")
    if k > 1:
        spool = spool.with_name(f"{spool.stem}-w{k}{spool.suffix}")
    mine = c.model_copy(update={
        "client_id": c.client_id if k == 1 else f"{c.client_id}-w{k}", "spool": str(spool),
        "share_group": service.default_share_group(c), "metrics_port": None, "workers": 1})
    out = cfg.model_copy(update={"collector": mine})
    out._base_dir = cfg.base_dir  # noqa: SLF001 -- a private attribute pydantic's copy keeps, said for clarity
    return out


def leftovers(cfg: "Config", n: int) -> list[int]:
    """The workers beyond ``n`` an earlier run had: each leaves its spool file (``<spool>-w<k>``) until retired."""
    spool = cfg.path(cfg.collector.spool, "collector.spool")
    named = re.compile(rf"{re.escape(spool.stem)}-w([0-9]+){re.escape(spool.suffix)}")
    found = (named.fullmatch(p.name) for p in spool.parent.glob(f"{spool.stem}-w*{spool.suffix}"))
    return sorted(k for k in (int(f[1]) for f in found if f) if k > n)


@dataclass
class Worker:
    k: int
    retiring: bool = False  # an earlier run's worker, drained and then gone (see the module docstring)
    proc: asyncio.subprocess.Process | None = None
    port: int | None = None  # its loopback /metrics and /health, once it says
    subscribed: bool = False
    restarts: int = 0
    pids: list[int] = field(default_factory=list)  # every pid it has had (tests, logs)

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and self.port is not None


class Supervisor:
    def __init__(self, rt: "Runtime", n: int, retiring: Sequence[int] = ()) -> None:
        self.rt, self.n = rt, n
        self.cfg: CollectorConfig = rt.config.collector  # type: ignore[attr-defined]
        self.workers = [Worker(k) for k in range(1, n + 1)]
        self.retiring = [Worker(k, retiring=True) for k in retiring]
        self._limiter = Limiter(60.0)
        self._all_subscribed = asyncio.Event()

    async def run(self) -> None:
        log.info("collector starting workers", extra={"kv": {"workers": self.n, "cores": usable_cores(),
                                                             "share_group": service.default_share_group(self.cfg)}})
        # the supervisor's alone: its aiohttp client would be ~11 MiB in a process (workers: 1) that needs none
        from collector.workermetrics import Scraper

        self.scraper = Scraper(self.workers)
        try:
            async with http_metrics.serving(self.cfg.metrics_host, self.cfg.metrics_port, self.scraper.health,
                                              self.scraper.render):
                async with asyncio.TaskGroup() as tg:
                    for w in self.workers:
                        tg.create_task(self._keep(w), name=f"collector-worker-{w.k}")
                    tg.create_task(self._announce(), name="collector-workers-subscribed")
                    tg.create_task(self.retire(), name="collector-workers-retiring")
        finally:
            await self.scraper.close()

    async def retire(self) -> None:
        """Drain and end the sessions and spools of the workers an earlier run had beyond this one's."""
        if not self.retiring:
            return
        log.warning("collector: an earlier run had more workers; retiring their sessions and spools", extra={
            "kv": {"workers": self.n, "retiring": ",".join(str(w.k) for w in self.retiring)}})
        async with asyncio.TaskGroup() as tg:
            for w in self.retiring:
                tg.create_task(self._keep(w), name=f"collector-worker-{w.k}-retiring")

    async def _announce(self) -> None:
        stopping = asyncio.ensure_future(self.rt.stop.wait())
        ready = asyncio.ensure_future(self._all_subscribed.wait())
        await asyncio.wait({stopping, ready}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        ready.cancel()
        if self._all_subscribed.is_set():
            log.info("all collector workers subscribed", extra={"kv": {"workers": self.n}})

    async def _keep(self, w: Worker) -> None:
        """Run worker ``w`` until stop; start it again (backoff) whenever it exits unasked."""
        loop = asyncio.get_running_loop()
        delay = FIRST_RESTART_S
        while not self.rt.stop.is_set():
            started = loop.time()
            code = await self._once(w)
            if self.rt.stop.is_set() or (w.retiring and code == 0):
                return
            w.restarts += 1
            if not w.retiring:
                self.scraper.restarted(w.k)
            if loop.time() - started >= STEADY_S:
                delay = FIRST_RESTART_S
            key = ("exit", w.k)
            if self._limiter.allow(key):
                log.error("collector worker exited; starting it again", extra={"kv": {
                    "worker": w.k, "pid": w.pids[-1] if w.pids else None, "exit": _exit_text(code),
                    "restart_in_s": delay, "restarts": w.restarts, "suppressed": self._limiter.take_suppressed(key)}})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.rt.stop.wait()
            delay = min(MAX_RESTART_S, delay * 2)

    async def _once(self, w: Worker) -> int | None:
        """One life of worker ``w``: start, feed it its config, follow what it says, stop it on ``rt.stop``."""
        cfg = worker_config(self.rt.config, w.k)  # type: ignore[arg-type]
        root = logging.getLogger()
        as_json = any(getattr(h.formatter, "as_json", False) for h in root.handlers)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector.workers", "--worker", str(w.k), "--base-dir", str(cfg.base_dir),
            "--log-level", logging.getLevelName(root.getEffectiveLevel()), *(["--log-json"] if as_json else []),
            *(["--retire"] if w.retiring else []),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        w.proc, w.port, w.subscribed = proc, None, False
        w.pids.append(proc.pid)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            # One line of JSON, and stdin stays open: its end tells the worker that we are gone.
            proc.stdin.write(cfg.model_dump_json().encode() + b"\n")
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died at once: proc.wait() below says how
        follow = asyncio.create_task(self._follow(w, proc.stdout))
        exited = asyncio.ensure_future(proc.wait())
        stopping = asyncio.ensure_future(self.rt.stop.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                await _terminate(proc, w.k)
            return await exited
        finally:
            stopping.cancel()
            follow.cancel()
            with contextlib.suppress(Exception):
                proc.stdin.close()
            w.port, w.subscribed = None, False

    async def _follow(self, w: Worker, out: asyncio.StreamReader) -> None:
        """The worker's control lines: ``{"port": N}`` once serving, ``{"subscribed": true}`` on each subscribe."""
        async for line in out:
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # not ours: something printed to stdout
            if not isinstance(msg, dict):
                continue
            if "port" in msg:
                w.port = int(msg["port"])
            if msg.get("subscribed") and not w.retiring:
                w.subscribed = True
                if all(x.subscribed for x in self.workers):
                    self._all_subscribed.set()


async def _terminate(proc: asyncio.subprocess.Process, k: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_GRACE_S):
            await proc.wait()
    except TimeoutError:
        log.error("collector worker did not stop within %.0f s: killing it (the broker redelivers what it held)",
                  STOP_GRACE_S, extra={"kv": {"worker": k, "pid": proc.pid}})
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "?"
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return f"code {code}"


async def serve(rt: "Runtime", on_accepted: service.OnAccepted | None = None) -> None:
    """The collector part: ``collector.workers`` processes under a supervisor, or the collector in this process."""
    n = worker_count(rt, on_accepted)
    retiring = [] if rt.config.mqtt.embedded else leftovers(rt.config, n)  # type: ignore[arg-type]
    if n > 1:
        await Supervisor(rt, n, retiring).run()
    elif not retiring:
        await service.serve(rt, on_accepted)
    else:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(Supervisor(rt, 0, retiring).retire(), name="collector-workers-retiring")
            await service.serve(rt, on_accepted)


# ---------------------------------------------------------------- the worker side: python -m collector.workers

def _send(msg: dict[str, object]) -> None:
    sys.stdout.buffer.write(json.dumps(msg).encode() + b"\n")
    sys.stdout.buffer.flush()


class _Told(logging.Handler):
    """Tells the supervisor when the collector subscribes (the event the log already records; no polling)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "collector subscribed":
            with contextlib.suppress(OSError):
                _send({"subscribed": True})


class _Tagged(logging.Filter):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def filter(self, record: logging.LogRecord) -> bool:
        record.kv = {**(getattr(record, "kv", None) or {}), "worker": self.k}
        return True


async def _work(cfg: "Config", k: int, retire: bool) -> int:
    from prometheus_client import REGISTRY

    from yujing.runtime import Runtime

    rt = Runtime(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, rt.stop.set)
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    async def orphaned() -> None:
        await stdin.read()  # EOF: the supervisor is gone
        rt.stop.set()

    client_id = cfg.collector.client_id

    def health() -> dict[str, object]:
        connected = REGISTRY.get_sample_value("yujing_collector_mqtt_subscribed", {"client_id": client_id}) == 1
        db_up = REGISTRY.get_sample_value("yujing_collector_db_up") == 1
        spool = int(REGISTRY.get_sample_value("yujing_collector_spool_readings") or 0)
        return {"ok": connected and db_up, "db_up": db_up, "spool_readings": spool, "connected": connected}

    watch = asyncio.create_task(orphaned())
    try:
        async with http_metrics.serve("127.0.0.1", 0, health) as port:
            _send({"port": port, "pid": os.getpid()})
            retired = await service.serve(rt, retire=retire)
    finally:
        watch.cancel()
    return EX_TEMPFAIL if retire and not retired else 0  # a retiring worker stopped early is started again


def main(argv: list[str] | None = None) -> int:
    import argparse

    from yujing import log as ylog
    from yujing.compose import Config

    p = argparse.ArgumentParser(prog="python -m collector.workers", description="one collector worker (started "
                                "by collector/workers.py; reads its configuration as one JSON line on stdin)")
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--base-dir", required=True)
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-json", action="store_true")
    p.add_argument("--retire", action="store_true", help="drain this worker's session and spool, then end both")
    args = p.parse_args(argv)
    ylog.setup(args.log_level, args.log_json)
    for h in logging.getLogger().handlers:
        h.addFilter(_Tagged(args.worker))
        h.setLevel(args.log_level.upper())
    # the subscribe event reaches _Told whatever the level asked for; the log itself still shows only that level
    told = logging.getLogger("yujing.collector")
    told.setLevel(min(told.getEffectiveLevel(), logging.INFO))
    told.addHandler(_Told())
    base = Path(args.base_dir)
    cfg = Config.model_validate_json(sys.stdin.buffer.readline(), context={"base_dir": base})
    cfg._base_dir = base  # noqa: SLF001 -- as yujing.config.load sets it
    return asyncio.run(_work(cfg, args.worker, args.retire))


if __name__ == "__main__":
    raise SystemExit(main())
