"""The workflow's SLA timer scheduler: the shared one, with a fast path for a clean batch.

`shared.timers.TimerScheduler` wraps every handler in a savepoint so one failing timer
cannot hold back the rest; those two extra statements per timer cost about 4x in
throughput (bench/workflow_timers.py). Here a batch first runs without savepoints; if
any handler raises, that transaction rolls back entirely and the batch is run again by
the shared per-timer path, which fires the good ones and postpones the bad one. The
guarantees do not change: the effects and the `fired` mark commit together, once.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from shared.app import Runtime
from shared.context import Actor, actor_var
from shared.db import utcnow
from shared.timers import FIRED, LAG, TimerScheduler
from shared.uow import UnitOfWork


class _BatchFailed(Exception):
    pass


class BatchedTimerScheduler(TimerScheduler):
    async def fire_due(self, now: dt.datetime | None = None) -> int:
        try:
            return await self._fire_batch(now)
        except _BatchFailed:
            return await super().fire_due(now)

    async def _fire_batch(self, now: dt.datetime | None) -> int:
        now = now or self.clock()
        t = self.table
        try:
            async with self.db.transaction() as session:
                s = UnitOfWork(session, self.outbox)
                rows = await self.claim(s, now)
                for row in rows:
                    handler = self.handlers.get(row.kind)
                    if handler is not None:
                        actor_var.set(Actor(f"service:{self.service}", "service", None, "TIMER", row.kind))
                        await handler(s, row)
                fired_at = utcnow()
                if rows:
                    await s.execute(
                        update(t).where(t.c.id.in_([r.id for r in rows])).values(status="fired", fired_at=fired_at)
                    )
        except Exception as exc:  # noqa: BLE001 - any failure: retry timer by timer
            raise _BatchFailed from exc
        for row in rows:
            FIRED.labels(self.service, row.kind).inc()
            LAG.labels(self.service).observe(max(0.0, (fired_at - row.due_at).total_seconds()))
        return len(rows)


async def use_batched_scheduler(runtime: Runtime, poll_seconds: float) -> None:
    """Swap the runtime's shared scheduler (started by ServiceSpec(timers=...)) for the batched one."""
    old = runtime.scheduler
    if old is None:
        return
    await old.stop()
    runtime.scheduler = BatchedTimerScheduler(
        old.service,
        old.db,
        old.table,
        old.handlers,
        poll_seconds=poll_seconds,
        batch=old.batch,
        clock=old.clock,
        outbox=old.outbox,
    )
    runtime.scheduler.start()
