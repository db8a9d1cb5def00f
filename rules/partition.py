"""Spreading the rules over several processes without splitting a site's state: partitions by gateway.

    rules:
      partition: {count: 4}            # `yujing rules CONFIG` starts and supervises 4 partitions (one per core)
      partition: {count: 4, index: 2}  # this process is partition 2 of 4 (e.g. one per machine)

A partition judges the readings, heartbeats and state of *its* gateways only, subscribing to their topics
alone (``{prefix}/readings/<gw>``, ``{prefix}/status/<gw>``), with a state file, an MQTT client id and a
persistent session of its own. Gateways are never split from what they share, so no state is split:

- gateways with devices at the same site, and gateways whose sites a landslide couples to a rain site
  (``rain_sites``), form one *group* (a connected component), placed as a whole;
- a group goes to partition ``crc32(its smallest gateway id) % count``: stable across processes, machines
  and restarts (Python's ``hash`` is salted per process), so every process computes the same map;
- a collector's loss report (``{prefix}/loss/+``, no gateway of its own) is judged by partition 0.

MQTT shared subscriptions cannot do this: they hand each message to any member, so one site's counter
readings would be judged by several engines, none with the whole count.

Changing ``count`` moves groups between partitions: at start each partition takes over, from the state files of
any other layout beside its own (``rules.state.p<j>of<m>.sqlite``, or the one process's ``rules.state.sqlite``),
the state of its own gateways, devices and sites — windows, lifecycles of warnings in force, unpublished warnings —
in one transaction with a note that it did (:func:`adopt`). Once every partition of the new layout has, the old
file is removed and the old partition's MQTT session ended.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import re
import signal
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rules.config import Resolver
from rules.store import StateStore
from yujing.sqlite import remove_db

if TYPE_CHECKING:
    from yujing.compose import Config
    from yujing.runtime import Runtime

log = logging.getLogger("yujing.rules")


@dataclass(frozen=True)
class Share:
    """What one partition judges."""

    index: int
    count: int
    gateways: frozenset[str]
    devices: frozenset[str]
    sites: frozenset[str]

    @property
    def suffix(self) -> str:
        """``p<index>of<count>``: in its state file's name and its MQTT client id."""
        return f"p{self.index}of{self.count}"

    @property
    def takes_loss_reports(self) -> bool:
        return self.index == 0


def groups(cfg: Config) -> dict[str, str]:
    """Each gateway's group, named by the smallest gateway id in it (see the module docstring)."""
    parent: dict[str, str] = {g.id: g.id for g in cfg.gateways}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    def join(a: str, b: str) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_site: dict[str, str] = {}  # site -> a gateway with a device there
    for g in cfg.gateways:
        for d in g.devices:
            if d.site in by_site:
                join(by_site[d.site], g.id)
            else:
                by_site[d.site] = g.id
    resolver = Resolver(cfg.rules, {s.id: s for s in cfg.sites})
    for s in cfg.sites:
        if s.kind != "landslide":
            continue
        for rain_site in resolver.get("landslide", s.id).rain_sites:  # as rules.landslide couples them
            if s.id in by_site and rain_site in by_site:
                join(by_site[s.id], by_site[rain_site])
    return {g: root(g) for g in parent}


def partition_of(group: str, count: int) -> int:
    return zlib.crc32(group.encode()) % count


def share(cfg: Config) -> Share | None:
    """This process's share, or None when the rules are not partitioned (``count`` 1)."""
    p = cfg.rules.partition
    if p.count == 1:
        return None
    if p.index is None:
        raise ValueError("rules.partition.index is not set: the supervisor (yujing rules) sets it per process")
    mine = {g for g, grp in groups(cfg).items() if partition_of(grp, p.count) == p.index}
    devices = {d.id for g in cfg.gateways if g.id in mine for d in g.devices}
    sites = {d.site for g in cfg.gateways if g.id in mine for d in g.devices}
    return Share(p.index, p.count, frozenset(mine), frozenset(devices), frozenset(sites))


def for_partition(cfg: Config, index: int) -> Config:
    """``cfg`` as partition ``index`` of its ``rules.partition.count`` sees it."""
    rules = cfg.rules.model_copy(update={"partition": cfg.rules.partition.model_copy(update={"index": index})})
    port = cfg.rules.metrics_port
    if port:  # each partition serves its own /metrics and /health: the port after the configured one's index
        rules = rules.model_copy(update={"metrics_port": port + index})
    return cfg.model_copy(update={"rules": rules})


# --- a new count: the new layout takes the old one's state over -------------------------------------------------

Layout = tuple[int, int] | None  # (index, count) of a partition, or None: one process judges every gateway
_ID_PARTS = re.compile(r"[:/\x1f]")  # what joins ids in pack entities and lifecycle keys


def state_files(base: Path) -> dict[Path, Layout]:
    """Every rules state file beside ``base`` (the one process's), with the layout that wrote it."""
    named = re.compile(re.escape(base.stem) + r"(?:\.p([0-9]+)of([0-9]+))?" + re.escape(base.suffix))
    out: dict[Path, Layout] = {}
    for path in base.parent.glob(f"{base.stem}*{base.suffix}"):
        if m := named.fullmatch(path.name):
            out[path] = (int(m[1]), int(m[2])) if m[1] else None
    return out


def owners(cfg: Config, count: int) -> dict[str, int]:
    """Every gateway, device and site id: the partition of ``count`` that judges it."""
    group = groups(cfg)
    out: dict[str, int] = {}
    for g in cfg.gateways:
        out[g.id] = i = partition_of(group[g.id], count)
        for d in g.devices:
            out[d.id] = out[d.site] = i
    return out


def owner(name: str, owned: dict[str, int]) -> int:
    """The partition of a pack entity (``rg-1``, ``d/rg-1``, ``rg-1\x1fbins12``) or a lifecycle key
    (``rainstorm:RG-1``): the first id of a gateway, device or site in it; partition 0 for one naming none (a
    collector's loss report, which partition 0 takes)."""
    if name in owned:
        return owned[name]
    for part in _ID_PARTS.split(name):
        if part in owned:
            return owned[part]
    return 0


def _site_or_key(warning: str) -> str:
    w = json.loads(warning)
    return w.get("site") or w["key"]


def adopt(cfg: Config, mine: Share | None, store: StateStore, base: Path,
          session_of: Callable[[Layout], str]) -> list[str]:
    """Take this process's share of every other layout's state file into ``store`` (once: the store remembers);
    remove a file every partition of this layout has taken its share of. Returns the MQTT client ids of the
    layouts whose files are gone, whose sessions should be ended (``session_of`` names them)."""
    count = mine.count if mine is not None else 1
    others = {path: lay for path, lay in state_files(base).items() if (lay[1] if lay else 1) != count}
    if not others:
        return []
    owned = owners(cfg, count) if mine is not None else None
    here = mine.suffix if mine is not None else ""
    everyone = {f"p{i}of{count}" for i in range(count)} if mine is not None else {""}

    def ours(name: str) -> bool:
        return owned is None or owner(name, owned) == mine.index  # type: ignore[union-attr]

    ended = []
    for path, lay in sorted(others.items()):
        with StateStore(path) as old:
            if not store.adopted(path.name):
                packs, lifecycles, outbox = old.rows()
                packs = [r for r in packs if ours(r[1])]
                lifecycles = [r for r in lifecycles if ours(r[0])]
                outbox = [w for w in outbox if ours(_site_or_key(w))]
                store.adopt(path.name, packs, lifecycles, outbox)
                in_force = sum(json.loads(js).get("level") is not None for _, js in lifecycles)
                log.warning("rules: the partition count changed; took this partition's share of another layout's "
                            "state", extra={"kv": {"from": path.name, "entities": len(packs),
                                                   "lifecycles": len(lifecycles), "unpublished": len(outbox),
                                                   "in_force": in_force}})
            taken = old.taken_by(here)
        if everyone <= taken:
            remove_db(path)
            ended.append(session_of(lay))
            log.info("rules: every partition took its share of an old layout's state: file removed",
                     extra={"kv": {"file": path.name}})
    return ended


# --- the supervisor: `yujing rules CONFIG` with partition.count > 1 and no index --------------------------------

RESTART_MIN_S, RESTART_MAX_S = 1.0, 30.0


def _child(cfg: Config, index: int, level: int, as_json: bool) -> None:  # in the partition's own process
    from rules.service import serve
    from yujing import log as ylog
    from yujing.runtime import Runtime

    ylog.setup(logging.getLevelName(level), as_json)  # as the parent logs (every line says its partition)

    async def main() -> None:
        rt = Runtime(for_partition(cfg, index))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, rt.stop.set)
        await serve(rt)
    asyncio.run(main())


async def supervise(rt: Runtime, **_: Any) -> None:
    """Run ``rules.partition.count`` partitions, one process each, until ``rt.stop``; a partition that exits
    unasked is started again (backing off from 1 s to 30 s; its persistent session held what it missed)."""
    cfg = rt.config
    count = cfg.rules.partition.count
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no event loop or sockets inherited
    level = logging.getLogger().getEffectiveLevel()
    as_json = any(getattr(h.formatter, "as_json", False) for h in logging.getLogger().handlers)
    procs: dict[int, Any] = {}
    backoff = {i: RESTART_MIN_S for i in range(count)}

    def start(i: int) -> None:
        proc = ctx.Process(target=_child, args=(cfg, i, level, as_json), name=f"yujing-rules-{i}", daemon=False)
        proc.start()
        procs[i] = proc
        log.info("rules: partition started", extra={"kv": {"partition": i, "of": count, "pid": proc.pid}})

    for i in range(count):
        start(i)
    loop = asyncio.get_running_loop()
    try:
        while not rt.stop.is_set():
            await rt.sleep(0.5)
            for i, proc in list(procs.items()):
                if proc.is_alive() or rt.stop.is_set():
                    continue
                log.error("rules: partition exited; restarting", extra={"kv": {
                    "partition": i, "exitcode": proc.exitcode, "retry_s": backoff[i]}})
                await asyncio.sleep(backoff[i])
                backoff[i] = min(backoff[i] * 2, RESTART_MAX_S)
                if not rt.stop.is_set():
                    start(i)
    finally:
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the partition saves its state and acknowledges on the way out
        for proc in procs.values():
            await loop.run_in_executor(None, proc.join, 15.0)
            if proc.is_alive():
                log.error("rules: partition did not stop in 15 s; killed", extra={"kv": {"pid": proc.pid}})
                proc.kill()
