"""Stopping background tasks for sure, and finishing work that carries other callers' results.

On Python 3.11 `asyncio.wait_for` (used inside nats-py's request/publish, among others) drops a
cancellation that arrives in the same loop turn as its inner future's result (CPython gh-86296,
fixed in 3.12). A background loop hit that way keeps running, and a `stop()` that cancels once
and awaits waits forever: that hung a service's shutdown in CI. Here a stop cancels again until
the task has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

log = structlog.get_logger("pitcrew.tasks")


async def cancel_and_wait(task: asyncio.Task[Any] | None, *, retry_every: float = 0.1) -> None:
    """Cancel `task` and return once it has ended, repeating the cancel while it still runs."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_every)
    if not task.cancelled() and task.exception() is not None:
        log.warning("background_task_failed", task=task.get_name(), error=repr(task.exception()))


async def outlive_cancellation(task: asyncio.Future[Any]) -> None:
    """Wait until `task` has ended, even if this waiter is cancelled meanwhile (the cancellation is
    raised once the task has ended): for a batch that carries other callers' work, whose answers
    must all be handed out. The task's own outcome stays on it for the caller to read."""
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})
        raise
    except Exception:  # noqa: BLE001 - read from the task by the caller
        pass
