"""Two workflow replicas on one database (PostgreSQL in `make test-postgres`) fire each of 1,000 SLA timers once."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from services.workflow import definitions, lifecycle
from services.workflow.main import create_app
from services.workflow.models import infra
from services.workflow.sla import BREACH, WARNING
from shared.db import utcnow
from tests.conftest import eventually
from tests.workflow.conftest import settings_for

# On PostgreSQL the replicas split the work with SKIP LOCKED; on SQLite the write lock serialises them.
pytestmark = pytest.mark.db

INSTANCES = 500  # a warning and a breach timer each: 1,000 timers


async def test_two_replicas_fire_each_of_1000_timers_exactly_once(db_url):
    a, b = create_app(settings_for(db_url)), create_app(settings_for(db_url))
    calls: collections.Counter[str] = collections.Counter()
    by_replica: collections.Counter[str] = collections.Counter()

    def counting(name: str, handler):
        # Count a firing only when its transaction commits (a rolled-back batch is retried, not fired).
        async def wrapped(s, row):
            s.info.setdefault("fired_timers", []).append((name, row.id))
            await handler(s, row)

        return wrapped

    def on_commit(session) -> None:
        for name, timer_id in session.info.pop("fired_timers", []):
            calls[timer_id] += 1
            by_replica[name] += 1

    def on_rollback(session) -> None:
        session.info.pop("fired_timers", None)

    event.listen(Session, "after_commit", on_commit)
    event.listen(Session, "after_rollback", on_rollback)

    async with a.router.lifespan_context(a), b.router.lifespan_context(b):
        rt_a, rt_b = a.state.runtime, b.state.runtime
        wf = rt_a.domain
        far = (utcnow() + dt.timedelta(days=30)).isoformat()
        async with rt_a.unit_of_work() as uow:
            definition = await definitions.get_definition(uow, "tool-renewal")
        for start in range(0, INSTANCES, 100):
            async with rt_a.unit_of_work() as uow:
                for i in range(start, start + 100):
                    await lifecycle.start(
                        uow,
                        wf,
                        definition,
                        subject={"type": "contract", "id": f"k{i}", "service": "registry"},
                        context={"notice_deadline": far},
                        requester="service:registry",
                    )
        for name, rt in (("a", rt_a), ("b", rt_b)):
            assert type(rt.scheduler).__name__ == "BatchedTimerScheduler"
            rt.scheduler.batch = 25
            rt.scheduler.handlers = {k: counting(name, h) for k, h in rt.scheduler.handlers.items()}
        # Advance time: every timer falls due now (warnings a moment before their breaches).
        t = infra.timers
        now = utcnow()
        async with rt_a.transaction() as s:
            await s.execute(update(t).where(t.c.kind == WARNING).values(due_at=now - dt.timedelta(seconds=2)))
            await s.execute(update(t).where(t.c.kind == BREACH).values(due_at=now - dt.timedelta(seconds=1)))

        async def pending() -> int:
            async with rt_a.transaction(readonly=True) as s:
                return await s.scalar(select(func.count()).select_from(t).where(t.c.status == "pending"))

        await eventually(lambda: _is_zero(pending()), timeout=180)
        await asyncio.sleep(0.5)
        async with rt_a.transaction(readonly=True) as s:
            fired = await s.scalar(select(func.count()).select_from(t).where(t.c.status == "fired"))
            subjects = dict(
                (await s.execute(select(infra.outbox.c.subject, func.count()).group_by(infra.outbox.c.subject))).all()
            )
    event.remove(Session, "after_commit", on_commit)
    event.remove(Session, "after_rollback", on_rollback)
    assert fired == 2 * INSTANCES
    assert len(calls) == 2 * INSTANCES and set(calls.values()) == {1}
    assert subjects["workflow.sla.warning"] == INSTANCES and subjects["workflow.sla.breached"] == INSTANCES
    if not rt_a.db.is_sqlite:
        # PostgreSQL: both replicas take batches at once (SKIP LOCKED). SQLite gives its single write lock to
        # whoever asks first after a commit, and the waiter's busy handler backs off, so one replica may
        # legitimately fire everything there; exactly-once (above) is the guarantee on both.
        assert by_replica["a"] > 0 and by_replica["b"] > 0, by_replica


async def _is_zero(value) -> bool:
    return (await value) == 0
