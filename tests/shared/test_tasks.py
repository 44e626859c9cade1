"""Background tasks stop even when a library swallowed the first cancellation."""

from __future__ import annotations

import asyncio

import pytest

from shared.tasks import cancel_and_wait, outlive_cancellation


async def _loop_swallowing_one_cancel(seen: list[str]) -> None:
    # What asyncio.wait_for does on Python 3.11 when the cancel and its inner result meet.
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if seen:
                raise
            seen.append("swallowed")


async def test_one_cancel_is_not_enough_for_a_loop_that_swallowed_it():
    seen: list[str] = []
    task = asyncio.create_task(_loop_swallowing_one_cancel(seen))
    await asyncio.sleep(0.02)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done and seen == ["swallowed"]  # a stop() that cancels once would wait forever
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_cancel_and_wait_ends_the_task_and_accepts_none():
    seen: list[str] = []
    task = asyncio.create_task(_loop_swallowing_one_cancel(seen))
    await asyncio.sleep(0.02)
    await asyncio.wait_for(cancel_and_wait(task, retry_every=0.05), timeout=5)
    assert task.done() and seen == ["swallowed"]
    await cancel_and_wait(None)


async def test_a_task_that_already_failed_is_awaited_without_raising():
    async def boom() -> None:
        raise RuntimeError("lost")

    task = asyncio.create_task(boom())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert isinstance(task.exception(), RuntimeError)


async def test_a_cancelled_waiter_outlives_its_batch_and_then_is_cancelled() -> None:
    gate = asyncio.Event()

    async def batch() -> str:
        await gate.wait()
        return "written"

    task = asyncio.ensure_future(batch())
    waiter = asyncio.create_task(outlive_cancellation(task))
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.sleep(0.01)
    assert not waiter.done() and not task.cancelled()  # still waiting for the batch it carries
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert task.result() == "written"


async def test_a_failed_batch_leaves_its_error_on_the_task_for_the_caller() -> None:
    async def batch() -> None:
        raise OSError("no connection")

    task = asyncio.ensure_future(batch())
    await outlive_cancellation(task)
    assert isinstance(task.exception(), OSError)
