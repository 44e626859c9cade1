"""Background tasks stop even when a library swallowed the first cancellation."""

from __future__ import annotations

import asyncio

from shared.tasks import cancel_and_wait


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
