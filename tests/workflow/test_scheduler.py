"""The batched scheduler: a clean batch fires without savepoints; a bad timer falls back to one-by-one."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from services.workflow.models import history, infra
from services.workflow.scheduler import BatchedTimerScheduler
from shared import timers
from shared.db import Database, utcnow

pytestmark = pytest.mark.db


async def test_a_failing_timer_rolls_back_only_itself(db_url):
    db = Database(db_url)
    seen: list[str] = []

    async def handler(s, row) -> None:
        seen.append(row.subject_id)
        if row.payload["bad"]:
            raise ValueError("cannot fire")

    past = utcnow() - dt.timedelta(seconds=1)
    async with db.transaction() as s:
        for i in range(5):
            await timers.schedule(s, infra.timers, "k", f"s{i}", past + dt.timedelta(milliseconds=i), {"bad": i == 2})
    sch = BatchedTimerScheduler("t", db, infra.timers, {"k": handler})
    assert await sch.fire_due() == 5
    # First the whole batch (stopped at the bad one), then timer by timer.
    assert seen == ["s0", "s1", "s2", "s0", "s1", "s2", "s3", "s4"]
    async with db.transaction(readonly=True) as s:
        rows = {r.subject_id: r for r in (await s.execute(select(infra.timers))).all()}
    assert {k for k, r in rows.items() if r.status == "fired"} == {"s0", "s1", "s3", "s4"}
    assert rows["s2"].status == "pending" and rows["s2"].due_at > utcnow()
    seen.clear()
    assert await sch.fire_due() == 0 and seen == []
    await db.dispose()


async def test_an_effect_the_database_refuses_leaves_no_trace_and_the_timer_pending(db_url):
    db = Database(db_url)

    async def handler(s, row) -> None:
        # history.instance_id references instances: this insert breaks the foreign key.
        await s.execute(
            history.insert().values(instance_id="no-such-instance", at=utcnow(), actor="t", action="x", detail={})
        )

    async with db.transaction() as s:
        await timers.schedule(s, infra.timers, "k", "a", utcnow() - dt.timedelta(seconds=1), {})
    await BatchedTimerScheduler("t", db, infra.timers, {"k": handler}).fire_due()
    async with db.transaction(readonly=True) as s:
        status = await s.scalar(select(infra.timers.c.status))
        effects = (await s.execute(select(history))).all()
    assert status == "pending" and effects == []
    await db.dispose()
