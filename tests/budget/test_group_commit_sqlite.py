"""Group commit on SQLite: concurrent single-action postings share one transaction, and each still gets
exactly the answer it would have had alone (services.budget.sqlite_posting)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from prometheus_client import REGISTRY

from services.budget.sqlite_posting import ALONE, STALE, GroupCommit
from shared.db import Database
from tests.budget.conftest import problem
from tests.budget.test_group_commit import events_of
from tests.budget.test_invariants import check_invariants

pytestmark = pytest.mark.sqlite_only


def batch_stats() -> tuple[float, float]:
    count = REGISTRY.get_sample_value("pitcrew_budget_sqlite_batch_postings_count") or 0.0
    total = REGISTRY.get_sample_value("pitcrew_budget_sqlite_batch_postings_sum") or 0.0
    return count, total


async def test_concurrent_commitments_share_transactions_and_each_gets_its_own_answer(budget):
    plan = await budget.plan()
    await budget.line(plan["id"], "ROOT")
    ln = await budget.line(plan["id"], "LEAF", parent="ROOT")
    await budget.allocate(ln["id"], "130.01")
    await budget.commit(ln["id"], "0.01")  # warms the line cache
    count0, sum0 = batch_stats()

    results = await asyncio.gather(*(budget.commit(ln["id"], "10.00") for _ in range(20)))

    codes = [r.status_code for r in results]
    assert codes.count(201) == 13 and codes.count(409) == 7, codes
    for r in results:
        if r.status_code == 409:
            assert "short by" in problem(r, 409)["detail"]
    count, total = batch_stats()
    assert total - sum0 >= 18  # the postings that crossed no threshold went through a batch ...
    assert count - count0 < total - sum0  # ... and some shared one
    assert (await budget.balance(ln["id"]))["available"] == "0.00"
    events = await events_of(budget, ln["id"])
    committed = [e for e in events if e["type"] == "budget.commitment.committed"]
    crossed = [e["data"]["threshold"] for e in events if e["type"] == "budget.line.threshold_crossed"]
    assert len(committed) == 14 and sorted(crossed) == [80, 100]  # each threshold once, run alone
    await check_invariants(budget.runtime, plan["id"], "block")


@pytest.fixture
async def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/g.db", pool_size=4)
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    yield database
    await database.dispose()


async def rows(db: Database) -> list[tuple[int, str]]:
    async with db.engine.connect() as conn:
        return [tuple(r) for r in (await conn.exec_driver_sql("SELECT id, v FROM t ORDER BY id")).all()]


def insert(i: int, v: str = "ok"):
    def job(db: sqlite3.Connection):
        db.execute("INSERT INTO t VALUES (?, ?)", (i, v))
        return i

    return job


class Undone:
    undo = True


async def test_a_batch_keeps_each_jobs_own_outcome_in_order(db: Database):
    group = GroupCommit()
    gate = asyncio.Event()

    async def hold(db_: Database):  # the leader's batch waits in the write queue behind this writer
        async with db_.transaction() as s:
            await s.execute(__import__("sqlalchemy").text("INSERT INTO t VALUES (100, 'first')"))
            await gate.wait()

    blocker = asyncio.create_task(hold(db))
    await asyncio.sleep(0.02)

    def stale(_db):
        return STALE

    def refused(d):
        d.execute("INSERT INTO t VALUES (3, 'refused')")
        return Undone()

    def broken(d):
        d.execute("INSERT INTO t VALUES (4, 'half')")
        raise sqlite3.IntegrityError("boom")

    count0, sum0 = batch_stats()
    jobs = (insert(1), stale, refused, broken, insert(5), insert(1))
    leader, *followers = [asyncio.create_task(group.post(db.engine, j)) for j in jobs]  # sent in one turn
    await asyncio.sleep(0.02)
    gate.set()
    out = await asyncio.gather(leader, *followers, blocker)

    assert out[0] == 1 and out[1] is STALE and isinstance(out[2], Undone) and out[3] is ALONE and out[4] == 5
    assert out[5] is ALONE  # a duplicate key: rolled back to its savepoint, answered by running alone
    assert await rows(db) == [(1, "ok"), (5, "ok"), (100, "first")]  # nothing of 3, 4 or the duplicate
    count, total = batch_stats()
    assert (count - count0, total - sum0) == (1, 6)  # one transaction for all six


async def test_a_batch_that_cannot_commit_sends_every_posting_to_run_alone(db: Database):
    group = GroupCommit()

    def poison(d):  # leaves a statement that makes the COMMIT fail: a deferred foreign key, say
        d.execute("PRAGMA defer_foreign_keys = ON")
        d.execute("CREATE TABLE IF NOT EXISTS child (id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES t(id))")
        d.execute("INSERT INTO child VALUES (1, 999)")
        return 7

    out = await group.post(db.engine, poison)

    assert out is ALONE
    assert await rows(db) == []
    assert group._queue().busy is False  # the next posting leads at once


async def test_a_cancelled_leader_still_hands_out_its_followers_answers(db: Database):
    group = GroupCommit()
    gate = asyncio.Event()

    async def hold():
        async with db.transaction() as s:
            await s.execute(__import__("sqlalchemy").text("INSERT INTO t VALUES (100, 'first')"))
            await gate.wait()

    blocker = asyncio.create_task(hold())
    await asyncio.sleep(0.02)
    first = asyncio.create_task(group.post(db.engine, insert(1)))  # leads a batch of one, queued behind hold()
    await asyncio.sleep(0.02)
    waiting = [asyncio.create_task(group.post(db.engine, insert(i))) for i in (2, 3)]
    gone = asyncio.create_task(group.post(db.engine, insert(4)))
    await asyncio.sleep(0.02)
    gone.cancel()  # a caller that left while waiting: never written
    first.cancel()  # a leader whose caller left: its batch is still written
    gate.set()
    assert await asyncio.gather(*waiting) == [2, 3]
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await gone
    await blocker
    assert [r[0] for r in await rows(db)] == [1, 2, 3, 100]
    assert group._queue().busy is False
