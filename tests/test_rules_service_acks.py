"""The rules service acknowledges a message only once the state it changed is durable, and on the way out it
acknowledges everything that is: nothing the saved state covers is left for the broker to redeliver."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

from rules.service import RulesService
from testing.rules import deployment, site
from yujing.clock import Clock
from yujing.model import Hazard, HazardWarning, Level, Q, Reading, ReadingBatch, WarningState
from yujing.runtime import Runtime

T0 = datetime(2026, 7, 14, 0, 0, tzinfo=UTC)


class Delivered:
    """A received message as the service keeps it: it only needs to be acknowledged."""

    def __init__(self, acked: list[int], n: int) -> None:
        self.acked, self.n = acked, n

    def ack(self) -> None:
        self.acked.append(self.n)


def payload(i: int) -> bytes:
    r = Reading(id=f"r{i}", site="RG-1", sensor="rg-1", quantity=Q.RAIN_MM.value, value=0.5, unit="mm",
                ts=T0 + timedelta(minutes=i))
    return ReadingBatch(gateway="gw-1", readings=[r]).model_dump_json().encode()


async def test_stopping_acknowledges_the_messages_of_every_save_already_durable_not_only_the_last(tmp_path):
    svc = RulesService(Runtime(deployment([site("RG-1", "rain")], data_dir=str(tmp_path)), Clock(start=T0)))
    acked: list[int] = []
    try:
        for i in range(3):
            svc.acks.append(Delivered(acked, i))
            svc.on_readings("yujing/readings/gw-1", payload(i))
        svc.save()  # handed to the writer; its acks wait for the write
        assert acked == []
        svc.acks.append(Delivered(acked, 3))
        svc.on_readings("yujing/readings/gw-1", payload(3))
        svc.save_now()  # stopping: the connection closes right after, before the loop turns again
        assert acked == [0, 1, 2, 3]
    finally:
        svc.writer.close()
        svc.store.close()


async def test_a_message_that_changed_nothing_is_acknowledged_with_the_save_before_it_never_ahead_of_it(tmp_path):
    svc = RulesService(Runtime(deployment([site("RG-1", "rain")], data_dir=str(tmp_path)), Clock(start=T0)))
    acked: list[int] = []
    disk = threading.Event()  # the first write waits for it: a slow disk
    real = svc.store.write

    def slow(rows) -> None:
        disk.wait(10)
        real(rows)
    svc.store.write = slow  # type: ignore[method-assign]
    try:
        svc.acks.append(Delivered(acked, 0))
        svc.on_readings("yujing/readings/gw-1", payload(0))
        svc.save()
        svc.acks.append(Delivered(acked, 1))
        svc.on_readings("yujing/readings/gw-1", b"{not json")  # refused: nothing to save
        svc.save()
        await asyncio.sleep(0.05)
        assert acked == []  # the refusal's ack waits for the write before it (in order, as the broker sees it)
        disk.set()
        while svc.saves:
            await asyncio.gather(*list(svc.saves))
        assert acked == [0, 1]
    finally:
        disk.set()
        svc.writer.close()
        svc.store.close()


def warning(n: int) -> HazardWarning:
    return HazardWarning(key="rainstorm:RG-1", version=n, hazard=Hazard.RAINSTORM, level=Level.BLUE,
                         state=WarningState.ISSUED if n == 1 else WarningState.UPGRADED, site="RG-1", area="v1",
                         title=f"w{n}", evidence=[], values={}, issued_at=T0, updated_at=T0)


async def test_warnings_issued_while_a_save_is_written_go_out_together_in_the_next_save_in_order(tmp_path):
    svc = RulesService(Runtime(deployment([site("RG-1", "rain")], data_dir=str(tmp_path)), Clock(start=T0)))
    writes: list[int] = []
    real = svc.store.write

    def counted(rows) -> None:  # in the writer thread
        writes.append(len(rows.warnings))
        real(rows)
    svc.store.write = counted  # type: ignore[method-assign]
    acked: list[int] = []
    try:
        for n in (1, 2, 3):
            svc.acks.append(Delivered(acked, n))
            svc.commit([warning(n)])  # the first is written at once; the others arrive while it is
        while svc.saves:
            await asyncio.gather(*list(svc.saves))
        assert writes == [1, 2]  # one write for the burst after the first, not one per message
        assert acked == [1, 2, 3]
        assert [w.title for _, w in svc.store.outbox()] == ["w1", "w2", "w3"]
    finally:
        svc.writer.close()
        svc.store.close()


async def test_stopping_while_a_save_is_being_written_waits_for_it_and_acknowledges_its_messages(tmp_path):
    svc = RulesService(Runtime(deployment([site("RG-1", "rain")], data_dir=str(tmp_path)), Clock(start=T0)))
    acked: list[int] = []
    disk = threading.Event()  # the write waits for it: a slow disk
    real = svc.store.write

    def slow(rows) -> None:
        disk.wait(10)
        real(rows)
    svc.store.write = slow  # type: ignore[method-assign]
    try:
        svc.acks.append(Delivered(acked, 0))
        svc.on_readings("yujing/readings/gw-1", payload(0))
        svc.save()  # under way; nothing new comes before the stop
        threading.Timer(0.2, disk.set).start()
        svc.save_now()  # stopping: the connection closes right after, so its acks must go now
        assert acked == [0]
    finally:
        disk.set()
        svc.writer.close()
        svc.store.close()
