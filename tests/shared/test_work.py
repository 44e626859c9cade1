"""Bounded work: computation leaves the event loop free and stops at its deadline or when its caller goes."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from shared.errors import TooMuchWork
from shared.work import Abandoned, Budget, run_bounded


def spin(budget: Budget, seconds: float, done: threading.Event) -> int:
    """Busy CPU work that checks its budget, as a domain computation does."""
    end = time.monotonic() + seconds
    n = 0
    try:
        while time.monotonic() < end:
            n += sum(range(2000))
            budget.charge(1)
        return n
    finally:
        done.set()


async def test_the_event_loop_keeps_ticking_while_work_runs():
    done = threading.Event()
    ticks: list[float] = []

    async def ticker() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            ticks.append(time.perf_counter() - before)

    t = asyncio.create_task(ticker())
    await run_bounded(spin, 1.0, done, budget=Budget(10))
    await t
    # Run on the loop, the same work would have given one tick of a second; in a worker thread the
    # loop wakes every few milliseconds (the GIL switches every 5 ms).
    assert len(ticks) > 20
    assert max(ticks) < 0.5


async def test_a_deadline_stops_the_work_with_a_422_naming_the_limit():
    done = threading.Event()
    started = time.monotonic()
    with pytest.raises(TooMuchWork) as exc:
        await run_bounded(spin, 30.0, done, budget=Budget(0.2, what="attribution", hint="narrow from/to"))
    assert done.is_set() and time.monotonic() - started < 5
    assert "0.2 s" in exc.value.detail and "narrow from/to" in exc.value.detail


async def test_a_step_limit_is_a_422():
    with pytest.raises(TooMuchWork) as exc:
        await run_bounded(spin, 30.0, threading.Event(), budget=Budget(60, max_steps=10))
    assert "10 steps" in exc.value.detail


class Caller:
    """A request whose client hangs up after `after` seconds."""

    def __init__(self, after: float):
        self.at = time.monotonic() + after

    async def is_disconnected(self) -> bool:
        return time.monotonic() >= self.at


async def test_work_stops_when_its_caller_has_gone():
    done = threading.Event()
    started = time.monotonic()
    with pytest.raises(Abandoned):
        await run_bounded(spin, 30.0, done, budget=Budget(60), caller=Caller(0.3), poll_seconds=0.05)
    assert done.is_set(), "the worker thread must have stopped, not only the waiting coroutine"
    assert time.monotonic() - started < 5


async def test_cancelling_the_waiter_abandons_the_work():
    done = threading.Event()
    task = asyncio.create_task(run_bounded(spin, 30.0, done, budget=Budget(60)))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(done.wait, 5)
