"""How the rules service saves: state, the warnings it issued and the reading ids it covers in one transaction, handed
to the writer thread one at a time, and the messages acknowledged, in order, once what they changed is durable.

A mixin of :class:`rules.service.RulesService` (the state it reads is the service's: its engine, store, writer
and the lists below), kept apart so the service module stays about receiving and publishing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING, Protocol

from prometheus_client import Counter

from yujing.model import HazardWarning

if TYPE_CHECKING:
    from rules.engine import Engine
    from yujing.bus import Subscription
    from rules.store import StateStore
    from yujing.runtime import Runtime
    from yujing.sqlite import Writer

log = logging.getLogger("yujing.rules")

ISSUED = Counter("yujing_rules_warnings_total", "Warning messages issued", ["hazard", "state"])
# MQTT 5 receive maximum: messages the broker may send us before we acknowledge any. A save is
# forced at half of it, so the window never closes while state waits for its time to be saved.
ACK_WINDOW = 1000
SEEN_IDS = 200_000  # reading ids remembered (and saved with the state) to count a redelivered reading once


class Delivery:
    """A received message, as kept until the save that covers it: its connection's generation, mid and QoS."""

    __slots__ = ("generation", "mid", "qos")

    def __init__(self, generation: int, mid: int, qos: int) -> None:
        self.generation, self.mid, self.qos = generation, mid, qos


class Acknowledgeable(Protocol):
    def ack(self) -> None: ...


class Saving:
    rt: Runtime
    engine: Engine
    store: StateStore
    writer: Writer
    fresh: list[str]  # ids of the readings fed since the last save
    acks: list[Delivery | Acknowledgeable]  # the messages received since the last save
    issued: list[HazardWarning]  # warnings issued since the last save (saved with their state)
    saves: set[asyncio.Task[None]]
    # handed to the writer, not yet acknowledged: (its write, or None for the write before; messages; warnings)
    unacked: deque[tuple[Future[None] | None, list[Delivery | Acknowledgeable], list[HazardWarning]]]
    failed: asyncio.Future[None]  # a save that raised
    work: asyncio.Event  # the publisher has warnings to send
    _writing: bool  # a save is being written (the next waits for it: see save())
    _wanted: bool  # a save was asked for meanwhile
    _flushed: float
    _timer: asyncio.TimerHandle | None
    link: Subscription | None  # the connection messages arrive on (acks of an earlier one are void: redelivered)

    def commit(self, warnings: list[HazardWarning]) -> None:
        """Save state now if warnings were issued or a save is due; else make sure one follows soon."""
        self.issued += warnings
        flush_s = self.rt.config.rules.state_flush_s
        if self.issued or len(self.acks) >= ACK_WINDOW // 2 or time.monotonic() - self._flushed >= flush_s:
            self.save()
        elif self.acks and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(flush_s, self.save)

    def save(self) -> None:
        """Snapshot state, the warnings it issued and the ids of the readings it covers, hand them to the writer
        as one transaction, and PUBACK what it covers once it is durable. Warnings are saved with the state
        that issued them, so a restart never judges again what it already announced.

        The snapshot is taken here, synchronously, and writes run in the order they were handed over, so
        each transaction holds a state at least as new as the one before it.

        One write at a time (group commit): a save asked for while one is being written is made when that one
        is durable, and holds everything asked for meanwhile. A warning waited for the write before it anyway
        (writes are in order); now a burst of them costs one snapshot of the state, not one each (on 12 h of
        the bench's rain, 254 saves had been a third of the service's CPU)."""
        if self._writing:
            self._wanted = True
            return
        done = self._hand_over()
        if done is None:
            self._release()
            return
        self._writing = True
        task = asyncio.get_running_loop().create_task(self._when_durable(done))
        self.saves.add(task)
        task.add_done_callback(self.saves.discard)

    def save_now(self) -> None:
        """:meth:`save`, waiting for the write (and any before it): on the way out, or between connections.

        Every earlier save is durable too once this one is (the writer keeps their order), so their
        acknowledgements go now as well, while the connection may still carry them: left to their tasks, they
        would run after the connection closed and the broker would redeliver up to ``ACK_WINDOW / 2``
        messages at the next start (counted once by the saved ids, but judged for nothing)."""
        done = self._hand_over()
        if done is not None:
            done.result()
        elif self.unacked and self.unacked[-1][0] is not None:
            # nothing new, but a write is still under way: wait for it (its failure is the service's, see
            # _when_durable), or its messages would be acknowledged after the connection closed, i.e. never
            wait([self.unacked[-1][0]])
        self._release()

    def _hand_over(self) -> Future[None] | None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flushed = time.monotonic()  # I/O pacing, not scenario time
        packs, lcs = self.engine.dirty_state()
        warnings, self.issued = self.issued, []
        fresh, self.fresh = self.fresh, []
        acks, self.acks = self.acks, []
        if not (packs or lcs or warnings or fresh):
            # nothing to write: these messages are as durable as the last save, and acknowledged with it
            self.unacked.append((self.unacked[-1][0] if self.unacked else None, acks, warnings))
            return None
        rows = self.store.prepare(packs, lcs, warnings, seen=fresh, keep_seen=SEEN_IDS)
        done = self.writer.submit(self.store.write, rows)
        self.unacked.append((done, acks, warnings))
        return done

    async def _when_durable(self, done: Future[None]) -> None:
        try:
            await self.writer.wait(done)
        except Exception as exc:  # the state file refused it (StoreError): the service stops, as it always did
            if not self.failed.done():
                self.failed.set_exception(exc)
            return
        finally:
            self._writing = False
        self._release()
        if self._wanted:
            self._wanted = False
            self.save()

    def _release(self) -> None:
        """Acknowledge, in order, the messages of every save that is durable (a failed one holds the rest)."""
        while self.unacked:
            done, acks, warnings = self.unacked[0]
            if done is not None and (not done.done() or done.exception() is not None):
                return
            self.unacked.popleft()
            self._saved(acks, warnings)

    def _saved(self, acks: list[Delivery | Acknowledgeable], warnings: list[HazardWarning]) -> None:
        # the PUBACKs of a save queued at once (Subscription.ack_many); void if their connection is gone
        received = [(a.generation, a.mid, a.qos) for a in acks if type(a) is Delivery]
        if received and self.link is not None:
            self.link.ack_many(received)
        if len(received) < len(acks):
            for a in acks:
                if type(a) is not Delivery:
                    a.ack()  # type: ignore[union-attr]
        for w in warnings:
            ISSUED.labels(w.hazard.value, w.state.value).inc()
            log.info("warning %s", w.title, extra={"kv": {
                "key": w.key, "version": w.version, "state": w.state.value, "level": w.level.value,
                "drill": w.drill}})
        if warnings:
            self.work.set()
