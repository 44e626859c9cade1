"""Bounded work: heavy computation runs off the event loop and stops when it must.

A request that computes (attribution over long journeys, a graph analysis of a large
stack) must not hold the event loop: while it runs, `/health`, other requests and
the event consumers would wait. `run_bounded` runs a pure function in a small pool of
worker threads and hands it a `Budget` it checks between steps. The budget ends the
work with a 422 once the wall-clock deadline has passed, and quietly once the caller
has disconnected, so no CPU is spent on an answer nobody will read. Limits on the size
of the work itself (rows, steps) are the domain's to check before it starts, with
`Budget.charge` for what is only known while working.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter

from shared.errors import TooMuchWork

T = TypeVar("T")

STOPPED = Counter(
    "pitcrew_bounded_work_stopped_total",
    "Bounded computations stopped before they finished",
    ["service", "what", "reason"],
)

# Two workers: the machine has two cores, and a third computation would only slow the first two.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pitcrew-work")


class Abandoned(Exception):
    """The caller left; the work stopped and nobody is waiting for an answer."""


class Disconnectable(Protocol):
    async def is_disconnected(self) -> bool: ...


class Budget:
    """What a computation may still spend: checked by the worker, ended by the caller."""

    def __init__(
        self, seconds: float, *, max_steps: int | None = None, what: str = "request", hint: str = "narrow the request"
    ):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.max_steps = max_steps
        self.steps = 0
        self.what = what
        self.hint = hint
        self._abandoned = threading.Event()

    def abandon(self) -> None:
        self._abandoned.set()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()

    def check(self) -> None:
        """Raise when the caller left or the deadline passed; cheap enough to call every few thousand steps."""
        if self._abandoned.is_set():
            raise Abandoned(self.what)
        if time.monotonic() > self.deadline:
            raise TooMuchWork(
                f"The {self.what} took longer than the limit of {self.seconds:g} s and was stopped; {self.hint}.",
                limit_seconds=self.seconds,
            )

    def charge(self, steps: int) -> None:
        """Count steps of work against `max_steps` (a 422 beyond it) and check the deadline."""
        self.steps += steps
        if self.max_steps is not None and self.steps > self.max_steps:
            raise TooMuchWork(
                f"The {self.what} needs more than {self.max_steps:,} steps, the limit for one request; {self.hint}.",
                limit_steps=self.max_steps,
            )
        self.check()


async def run_bounded(
    fn: Callable[..., T],
    *args: Any,
    budget: Budget,
    caller: Disconnectable | None = None,
    service: str = "",
    poll_seconds: float = 0.25,
) -> T:
    """Run `fn(budget, *args)` in a worker thread; stop it when the caller disconnects.

    The event loop stays free while it runs. If this coroutine is cancelled (the server
    shuts down, an outer timeout) the work is abandoned too."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(_POOL, lambda: fn(budget, *args))
    watcher = asyncio.create_task(_watch(caller, budget, poll_seconds)) if caller is not None else None
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        budget.abandon()
        raise
    except TooMuchWork:
        STOPPED.labels(service, budget.what, "limit").inc()
        raise
    except Abandoned:
        STOPPED.labels(service, budget.what, "caller_gone").inc()
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def _watch(caller: Disconnectable, budget: Budget, poll_seconds: float) -> None:
    while not budget.abandoned:
        await asyncio.sleep(poll_seconds)
        if await caller.is_disconnected():
            budget.abandon()
            return
