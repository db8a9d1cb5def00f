"""The collector workers' metrics and health on the one port the configuration names (collector/workers.py).

Each worker keeps prometheus_client's default registry in its own process and serves it on a loopback port of
its choosing. The supervisor answers ``/metrics`` by reading every live worker's, adding a ``worker`` label to
each sample and merging the families (one HELP/TYPE per name, as Prometheus wants), followed by its own:

    yujing_collector_workers                      configured worker processes
    yujing_collector_workers_up                   workers running and serving (read at each scrape)
    yujing_collector_worker_restarts_total{worker}  workers that exited unasked and were started again

A worker's counters start from zero after a restart (a counter reset, which Prometheus' rate() handles).
``/health`` is 503 unless every worker is up, subscribed and its database answering; its JSON lists each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from collector.workers import Worker

SCRAPE_TIMEOUT_S = 2.0  # a worker that does not answer in this time is reported down for this scrape


class _Families:
    """A registry-like object for ``generate_latest``: merged families, then the supervisor's own."""

    def __init__(self, merged: Sequence[Metric], own: CollectorRegistry) -> None:
        self.merged, self.own = merged, own

    def collect(self) -> Iterator[Metric]:
        yield from self.merged
        yield from self.own.collect()


def merge(texts: Sequence[tuple[int, str]]) -> list[Metric]:
    """Exposition texts of workers (by number) as one list of families, each sample labelled ``worker``."""
    merged: dict[str, Metric] = {}
    for k, text in texts:
        label = str(k)
        for fam in text_string_to_metric_families(text):
            into = merged.get(fam.name)
            if into is None:
                into = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            for s in fam.samples:
                into.add_sample(s.name, {**s.labels, "worker": label}, s.value, s.timestamp, s.exemplar)
    return list(merged.values())


class Scraper:
    def __init__(self, workers: Sequence["Worker"]) -> None:
        self.workers = workers
        self.registry = CollectorRegistry()
        self._restarts = Counter("yujing_collector_worker_restarts", "Collector workers that exited unasked and "
                                 "were started again", ["worker"], registry=self.registry)
        Gauge("yujing_collector_workers", "Collector worker processes configured",
              registry=self.registry).set(len(workers))
        self._up = Gauge("yujing_collector_workers_up", "Collector workers running and serving their metrics",
                         registry=self.registry)
        for w in workers:
            self._restarts.labels(str(w.k))  # present at 0 from the start
        self._session: aiohttp.ClientSession | None = None

    def restarted(self, k: int) -> None:
        self._restarts.labels(str(k)).inc()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _get(self, w: "Worker", path: str) -> str | None:
        if not w.up:
            return None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S))
        try:
            async with self._session.get(f"http://127.0.0.1:{w.port}{path}") as resp:
                return await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def render(self) -> bytes:
        texts = await asyncio.gather(*(self._get(w, "/metrics") for w in self.workers))
        got = [(w.k, t) for w, t in zip(self.workers, texts) if t is not None]
        self._up.set(len(got))
        return generate_latest(_Families(merge(got), self.registry))  # type: ignore[arg-type]

    async def health(self) -> dict[str, object]:
        import json

        docs = await asyncio.gather(*(self._get(w, "/health") for w in self.workers))
        each: list[dict[str, object]] = []
        for w, text in zip(self.workers, docs):
            doc: dict[str, object] = {"ok": False, "db_up": False, "spool_readings": 0, "connected": False}
            if text is not None:
                try:
                    doc.update(json.loads(text))
                except ValueError:
                    pass
            up = text is not None
            each.append({"worker": w.k, "up": up, "pid": w.proc.pid if w.proc else None, "restarts": w.restarts,
                         **doc, "ok": up and bool(doc["ok"])})
        return {"ok": all(d["ok"] for d in each), "db_up": all(d["db_up"] for d in each),
                "spool_readings": sum(int(d["spool_readings"]) for d in each),  # type: ignore[call-overload]
                "connected": all(d["connected"] for d in each), "workers": each}
