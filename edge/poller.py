"""One task per device: poll on schedule (or listen), retry with backoff, flag, hand readings to the outbox.

Each device runs in its own task with its own connection, so a hung device
only ever delays itself. Poll slots are fixed on the scenario clock
(start + k × interval): a slow poll shifts nothing, and a poll that overruns
its slot skips the missed slots rather than bunching up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from datetime import datetime
from typing import Any, Awaitable, Callable

from prometheus_client import Counter
from pydantic import ValidationError

from edge.quality import QualityChecker
from edge.devices import make_reader
from edge.devices.reader import PolledReader, ReaderContext, Sample
from edge.status import DeviceState, DeviceStatus
from yujing.errors import DeviceError, PayloadError, StoreError
from yujing.log import Limiter
from yujing.model import Quality, Reading, new_id
from yujing.runtime import Runtime

log = logging.getLogger("yujing.edge.poller")
POLLS = Counter("yujing_edge_polls_total", "Device polls", ["device", "result"])
READINGS = Counter("yujing_edge_readings_total", "Readings produced", ["device", "quality"])
LOST = Counter("yujing_edge_readings_lost_total", "Readings the outbox could not store (disk full, I/O error)",
               ["device"])

Sink = Callable[[list[Reading]], Awaitable[Any]]


class DevicePoller:
    def __init__(self, rt: Runtime, gateway: str, device: Any, ctx: ReaderContext, sink: Sink,
                 status: DeviceStatus) -> None:
        self.rt = rt
        self.gateway = gateway
        self.device = device
        self.ctx = ctx
        self.sink = sink
        self.status = status
        self.checker = QualityChecker()
        self.limiter = Limiter(60.0)

    def readings(self, samples: list[Sample], now: datetime) -> list[Reading]:
        out = []
        for s in samples:
            sensor = f"{self.device.id}.{s.sensor}" if s.sensor else self.device.id
            quality = self.checker.assess((sensor, s.quantity), s.value, s.checks, s.quality)
            try:
                out.append(Reading(
                    id=new_id(), site=self.device.site, sensor=sensor, quantity=s.quantity, value=s.value,
                    unit=s.unit, ts=s.ts or now, quality=quality, gateway=self.gateway, drill=self.rt.drill,
                    meta=s.meta,
                ))
            except ValidationError as exc:  # e.g. a source's meta too large for the wire model
                self.ctx.reject(self.device.id, "reading")
                if self.limiter.allow("reading"):
                    log.warning("value does not fit a reading", extra={"kv": {
                        "device": self.device.id, "quantity": s.quantity, "error": str(exc).replace("\n", " ")}})
                continue
            READINGS.labels(self.device.id, quality.value).inc()
        return out

    async def run(self) -> None:
        """Poll or listen until stop. A bug in a reader is logged and the device restarted with backoff:
        it never takes the gateway (or the other devices) down."""
        delay = 1.0
        while not self.rt.stop.is_set():
            try:
                reader = make_reader(self.device, self.ctx)
                if isinstance(reader, PolledReader):
                    await self._poll_loop(reader)
                else:
                    await self._push_loop(reader)
                return
            except (DeviceError, OSError) as exc:  # a push reader that cannot even be built
                self._failed(str(exc))
            except Exception as exc:  # noqa: BLE001 — the isolation boundary of one device
                self._failed(f"reader crashed: {type(exc).__name__}: {exc}")
                if self.limiter.allow("crash"):
                    log.exception("device reader crashed; restarting it", extra={"kv": {"device": self.device.id}})
            if await self.rt.sleep(delay):
                return
            delay = min(delay * 2, 60.0)

    def _failed(self, error: str) -> None:
        st = self.status
        st.failures += 1
        st.errors += 1
        st.set(DeviceState.OFFLINE if st.failures >= self.device.offline_after else DeviceState.DEGRADED,
               self.rt.clock.now(), error)

    async def _emit(self, samples: list[Sample], now: datetime) -> None:
        """Hand readings to the outbox; if the outbox cannot take them (disk full), count, log, go on."""
        readings = self.readings(samples, now)
        try:
            await self.sink(readings)
        except StoreError as exc:
            LOST.labels(self.device.id).inc(len(readings))
            if self.limiter.allow("store"):
                log.error("readings lost: the outbox refused them", extra={"kv": {
                    "device": self.device.id, "error": str(exc), "lost": len(readings),
                    "suppressed": self.limiter.take_suppressed("store")}})

    # --- polled devices ----------------------------------------------------------------------------

    async def _poll_loop(self, reader: PolledReader) -> None:
        clock, interval = self.rt.clock, self.device.interval_s
        start = clock.timestamp()
        k = 0
        async with contextlib.AsyncExitStack() as opened:
            is_open = False

            async def read() -> list[Sample]:
                # a reader that cannot open (a USB adapter unplugged, a port not there at boot) has failed this
                # poll like any other: retried at the next slot, and its comm-error readings go out meanwhile
                nonlocal is_open
                if not is_open:
                    await opened.enter_async_context(reader)
                    is_open = True
                return await reader.read()

            while not self.rt.stop.is_set():
                now = clock.now()
                samples = await self._poll_once(read, now)
                if samples:
                    await self._emit(samples, now)
                k = max(k + 1, math.floor((clock.timestamp() - start) / interval) + 1)  # skip missed slots
                if await self.rt.sleep(start + k * interval - clock.timestamp()):
                    return

    async def _poll_once(self, read: Callable[[], Awaitable[list[Sample]]], now: datetime) -> list[Sample]:
        dev, st = self.device, self.status
        st.polls += 1
        error = ""
        for attempt in range(dev.retries + 1):
            try:
                # the reader has its own per-request timeouts; this bounds a reader that forgets them
                async with asyncio.timeout(dev.timeout_s * 8 + 1):
                    samples = await read()
            except (DeviceError, PayloadError, OSError, TimeoutError) as exc:
                error = str(exc) or type(exc).__name__
                if attempt < dev.retries and await self.rt.sleep(dev.backoff_s * 2 ** attempt):
                    break
                continue
            POLLS.labels(dev.id, "ok" if attempt == 0 else "retried").inc()
            st.failures = 0
            st.last_ok = self.rt.clock.now()
            clean = attempt == 0 and all(s.quality is Quality.OK for s in samples)
            st.set(DeviceState.OK if clean else DeviceState.DEGRADED, st.last_ok, "" if clean else error)
            return samples
        POLLS.labels(dev.id, "failed").inc()
        self._failed(error)
        if self.limiter.allow("fail"):
            log.warning("device poll failed", extra={"kv": {
                "device": dev.id, "error": error, "failures": st.failures, "state": st.state.value,
                "suppressed": self.limiter.take_suppressed("fail")}})
        return comm_errors(dev)

    # --- push devices ------------------------------------------------------------------------------

    async def _push_loop(self, reader: Any) -> None:
        dev, st = self.device, self.status
        backoff = dev.backoff_s or 0.5
        async with asyncio.TaskGroup() as tg:
            watchdog = tg.create_task(self._silence_watchdog())
            while not self.rt.stop.is_set():
                try:
                    async with reader:
                        if dev.silence_is_normal:
                            st.set(DeviceState.OK, self.rt.clock.now())
                        async for samples in _until_stop(reader.samples(), self.rt.stop):
                            now = self.rt.clock.now()
                            st.polls += 1
                            st.failures = 0
                            st.last_ok = now
                            st.set(DeviceState.OK, now)
                            backoff = dev.backoff_s or 0.5
                            if samples:
                                await self._emit(samples, now)
                except (DeviceError, OSError) as exc:
                    self._failed(str(exc))
                    if self.limiter.allow("fail"):
                        log.warning("device link failed", extra={"kv": {"device": dev.id, "error": str(exc)}})
                if self.rt.stop.is_set() or await self.rt.sleep(backoff):
                    break
                backoff = min(backoff * 2, 60.0)
                reader = make_reader(dev, self.ctx)
            watchdog.cancel()

    async def _silence_watchdog(self) -> None:
        """A push device silent for ``offline_after`` report intervals is offline (unless silence is normal)."""
        dev, st = self.device, self.status
        while not await self.rt.sleep(dev.interval_s):
            if dev.silence_is_normal:
                continue
            last = st.last_ok
            quiet_s = (self.rt.clock.now() - last).total_seconds() if last else None
            if quiet_s is not None and quiet_s > dev.interval_s * dev.offline_after:
                st.set(DeviceState.OFFLINE, self.rt.clock.now(), f"silent for {quiet_s:.0f} s")
            elif quiet_s is not None and quiet_s > dev.interval_s * 1.5:
                st.set(DeviceState.DEGRADED, self.rt.clock.now(), f"silent for {quiet_s:.0f} s")


def comm_errors(device: Any) -> list[Sample]:
    """What a failed poll reports: one comm-error sample, value NaN, per value the device's config says it
    reports (``values()``: its register map, fields, elements), whatever its kind, so that the rules see a
    fault where they would otherwise see silence."""
    return [Sample(v.quantity, math.nan, v.unit, getattr(v, "sensor", ""), quality=Quality.COMM_ERROR)
            for v in device.values()]


async def _until_stop(it: Any, stop: asyncio.Event) -> Any:
    """Iterate ``it`` until it ends or ``stop`` is set (whichever first)."""
    stopper = asyncio.ensure_future(stop.wait())
    try:
        while True:
            nxt = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:
                nxt.cancel()
                return
            try:
                yield nxt.result()
            except StopAsyncIteration:
                return
    finally:
        stopper.cancel()
