"""Durable timers fire once, even with two schedulers racing on one database."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, insert, select

from shared import timers
from shared.db import Database, utcnow
from tests.shared.sample import effects, infra, metadata

pytestmark = pytest.mark.db


async def test_two_schedulers_fire_each_of_300_timers_exactly_once(new_db):
    url = await new_db("timers")
    db_a, db_b = Database(url), Database(url)
    async with db_a.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    calls: list[str] = []

    async def handler(s, row) -> None:
        calls.append(row.id)
        # The primary key makes a second firing of one timer fail loudly.
        await s.execute(insert(effects).values(event_id=row.id, name=row.kind))

    past = utcnow() - dt.timedelta(seconds=1)
    async with db_a.transaction() as s:
        for i in range(300):
            await timers.schedule(s, infra.timers, "ping", f"subject-{i}", past, {"i": i})
        future = await timers.schedule(s, infra.timers, "ping", "later", utcnow() + dt.timedelta(hours=1))
    a = timers.TimerScheduler("a", db_a, infra.timers, {"ping": handler}, batch=50)
    b = timers.TimerScheduler("b", db_b, infra.timers, {"ping": handler}, batch=50)

    async def drain(s: timers.TimerScheduler) -> None:
        while await s.fire_due():
            await asyncio.sleep(0)

    await asyncio.gather(drain(a), drain(b))
    async with db_a.transaction(readonly=True) as s:
        fired = await s.scalar(select(func.count()).select_from(effects))
        pending = (await s.scalars(select(infra.timers.c.id).where(infra.timers.c.status == "pending"))).all()
    assert fired == 300
    assert len(calls) == 300 and len(set(calls)) == 300
    assert pending == [future]
    await db_a.dispose()
    await db_b.dispose()


async def test_a_failing_timer_is_retried_later_and_does_not_block_the_others(new_db):
    db = Database(await new_db("timers"))
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)

    async def handler(s, row) -> None:
        if row.payload["bad"]:
            raise ValueError("cannot fire")
        await s.execute(insert(effects).values(event_id=row.id, name="ok"))

    past = utcnow() - dt.timedelta(seconds=1)
    async with db.transaction() as s:
        bad = await timers.schedule(s, infra.timers, "ping", "x", past, {"bad": True})
        await timers.schedule(s, infra.timers, "ping", "y", past, {"bad": False})
    assert await timers.TimerScheduler("a", db, infra.timers, {"ping": handler}).fire_due() == 2
    async with db.transaction(readonly=True) as s:
        row = (await s.execute(select(infra.timers).where(infra.timers.c.id == bad))).one()
        ok = await s.scalar(select(func.count()).select_from(effects))
    assert row.status == "pending" and row.due_at > utcnow()
    assert ok == 1
    await db.dispose()
