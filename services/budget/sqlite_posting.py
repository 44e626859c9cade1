"""Group commit on SQLite: postings that arrive while another is being written go out together.

SQLite has one writer at a time, so concurrent postings queue; each then pays its own turn in the
write queue, its own hop to the database thread and its own COMMIT. A posting that is its caller's
whole unit of work (nothing ran before it in the transaction, nothing will after) does not need its
caller's connection: it is a guard, some rows and a balance update. So the first such posting that
finds no batch being written leads one: it takes every posting waiting behind it, and on one
connection, in one hop, runs each inside its own SAVEPOINT, then COMMITs once.

Each posting gets exactly the answer it would have had alone, in arrival order: one that is refused
(a shortfall), stale (its cached line changed) or fails is rolled back to its savepoint and the others
stay. One that crosses a threshold (an event to build and publish after the update) is rolled back
and runs again alone, on its caller's connection. If the batch cannot be written at all (no
connection, a failed COMMIT), every posting in it runs again alone.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.sqlite_driver import on_thread
from shared.tasks import outlive_cancellation

BATCH_POSTINGS = Histogram(
    "pitcrew_budget_sqlite_batch_postings",
    "Postings written by one SQLite transaction (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)

# What a posting's job answers on the database thread, and what the caller then does.
ALONE = object()  # run again on the caller's own connection
STALE = object()  # its cached line or plan changed: rebuild it from current rows


class _Pending:
    __slots__ = ("job", "turn", "lead", "outcome")

    def __init__(self, job: Callable[[sqlite3.Connection], Any]):
        self.job = job
        self.turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lead = False
        self.outcome: Any = ALONE


class _Queue:
    __slots__ = ("busy", "waiting")

    def __init__(self) -> None:
        self.busy = False
        self.waiting: list[_Pending] = []


class GroupCommit:
    """The batches of one process (one queue per event loop, as tests run several)."""

    def __init__(self, *, max_postings: int = 64, on_commit: Callable[[], None] | None = None):
        self.max_postings = max_postings
        self.on_commit = on_commit  # told after a batch commits (the outbox relay's wake-up)
        self._queues: dict[asyncio.AbstractEventLoop, _Queue] = {}

    def _queue(self) -> _Queue:
        loop = asyncio.get_running_loop()
        q = self._queues.get(loop)
        if q is None:
            self._queues = {k: v for k, v in self._queues.items() if not k.is_closed()}
            q = self._queues[loop] = _Queue()
        return q

    async def post(self, engine: AsyncEngine, job: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `job` (on the database thread, inside a savepoint of a batch) and answer what it returned,
        `STALE` or `ALONE`. A job answers `STALE`, `ALONE`, a refusal (anything with `undo = True`,
        rolled back and answered) or its result; an exception means `ALONE`."""
        q = self._queue()
        me = _Pending(job)
        if q.busy:
            q.waiting.append(me)
            try:
                await me.turn  # written by a batch, or asked to lead the next one
            except asyncio.CancelledError:
                if me in q.waiting:
                    q.waiting.remove(me)
                elif me.lead:
                    self._hand_on(q)  # it was to lead: the next one does
                raise
            if not me.lead:
                return me.outcome
        else:
            q.busy = True
            await asyncio.sleep(0)  # postings sent in the same turn of the event loop join this batch
        try:
            batch = [me, *q.waiting[: self.max_postings - 1]]
            del q.waiting[: len(batch) - 1]
            await self._write(engine, batch)
        finally:
            self._hand_on(q)
        return me.outcome

    @staticmethod
    def _hand_on(q: _Queue) -> None:
        if q.waiting:
            nxt = q.waiting.pop(0)
            nxt.lead = True
            nxt.turn.set_result(None)
        else:
            q.busy = False

    async def _write(self, engine: AsyncEngine, batch: list[_Pending]) -> None:
        BATCH_POSTINGS.observe(len(batch))
        task = asyncio.ensure_future(self._run(engine, [p.job for p in batch]))
        try:
            # The batch carries other callers' postings: a cancelled leader still waits for it and
            # hands out every answer. A batch that failed was not written: each posting runs alone.
            await outlive_cancellation(task)
        finally:
            outcomes = task.result() if task.done() and not task.cancelled() and task.exception() is None else None
            for i, p in enumerate(batch):
                p.outcome = ALONE if outcomes is None else outcomes[i]
                if p is not batch[0] and not p.turn.done():
                    p.turn.set_result(None)
        if outcomes is not None and self.on_commit is not None:
            self.on_commit()

    @staticmethod
    async def _run(engine: AsyncEngine, jobs: list[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
        async with engine.connect() as conn:
            await conn.begin()  # BEGIN IMMEDIATE, sent with the batch after the write queue's turn
            outcomes = await on_thread(conn, lambda db: _in_savepoints(db, jobs))
            await conn.commit()  # committed on the thread already: this ends the write queue's turn
            return outcomes


def _in_savepoints(db: sqlite3.Connection, jobs: list[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
    """Each job in its own savepoint, then one COMMIT (on the database thread)."""
    outcomes = []
    for job in jobs:
        db.execute("SAVEPOINT posting")
        try:
            outcome = job(db)
        except Exception:  # noqa: BLE001 - its own answer comes from running alone
            outcome = ALONE
        if outcome is ALONE or outcome is STALE or getattr(outcome, "undo", False):
            db.execute("ROLLBACK TO posting")
        db.execute("RELEASE posting")
        outcomes.append(outcome)
    db.commit()
    return outcomes
