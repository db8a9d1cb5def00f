"""Stopping: a part that fails stops the others gracefully; a part that ignores stop is cancelled after a grace."""

import asyncio

import pytest

from yujing import stack
from yujing.compose import Config
from yujing.errors import YujingError
from yujing.runtime import Runtime


async def test_a_part_that_ignores_stop_is_cancelled_after_the_grace(monkeypatch):
    monkeypatch.setattr(stack, "STOP_GRACE_S", 0.2)
    rt = Runtime(Config())
    polite = asyncio.create_task(rt.stop.wait(), name="polite")
    stubborn = asyncio.create_task(asyncio.sleep(3600), name="stubborn")
    deadline = asyncio.create_task(stack.stop_deadline(rt, [polite, stubborn]))
    rt.stop.set()
    assert await asyncio.wait_for(deadline, 5) == ["stubborn"]
    await asyncio.sleep(0)
    assert polite.done() and not polite.cancelled()
    assert stubborn.cancelled()


async def test_a_failing_part_sets_stop_and_is_named(caplog):
    rt = Runtime(Config())
    failed: list[str] = []

    async def broken() -> None:
        raise RuntimeError("boom")

    await stack.supervised("collector", broken(), rt, failed)
    assert rt.stop.is_set() and failed == ["collector"]
    assert "collector failed" in caplog.text


async def test_run_parts_raises_naming_the_failed_part(monkeypatch):
    async def broken(rt) -> None:
        raise RuntimeError("boom")

    async def polite(rt) -> None:
        await rt.stop.wait()

    monkeypatch.setattr(stack, "serve_of", lambda part: broken if part == "collector" else polite)
    with pytest.raises(YujingError, match="collector failed"):
        await asyncio.wait_for(stack.run_parts(Config(), ("collector", "rules"), handle_signals=False), 10)
