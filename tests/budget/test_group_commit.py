"""Group commit on PostgreSQL: concurrent single-action postings share statements, and each still gets
exactly the answer it would have had alone."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from services.budget import pg_posting as posting
from tests.budget.conftest import problem
from tests.budget.test_invariants import check_invariants, postgres_only

pytestmark = [pytest.mark.postgres_only, postgres_only]


def batch_stats() -> tuple[float, float]:
    count = REGISTRY.get_sample_value("pitcrew_budget_posting_batch_postings_count") or 0.0
    total = REGISTRY.get_sample_value("pitcrew_budget_posting_batch_postings_sum") or 0.0
    return count, total


def statements_timed() -> float:
    return REGISTRY.get_sample_value("pitcrew_budget_posting_statement_seconds_count") or 0.0


async def events_of(budget, line_id: str) -> list[dict]:
    t = budget.runtime.infra.outbox
    async with budget.runtime.transaction(readonly=True) as s:
        payloads = (await s.execute(select(t.c.payload).order_by(t.c.seq))).scalars().all()
    return [e for e in map(json.loads, payloads) if e["data"].get("line_id") == line_id]


async def test_concurrent_commitments_are_batched_and_each_gets_its_own_answer(budget):
    plan = await budget.plan()
    await budget.line(plan["id"], "ROOT")
    ln = await budget.line(plan["id"], "LEAF", parent="ROOT")
    await budget.allocate(ln["id"], "130.01")
    await budget.commit(ln["id"], "0.01")  # warms the line cache, so the 20 below are single statements
    count0, sum0 = batch_stats()
    timed0 = statements_timed()

    results = await asyncio.gather(*(budget.commit(ln["id"], "10.00") for _ in range(20)))

    codes = [r.status_code for r in results]
    assert codes.count(201) == 13 and codes.count(409) == 7, codes
    for r in results:
        if r.status_code == 409:  # the exact shortfall of a posting that ran alone
            assert "short by" in problem(r, 409)["detail"]
        else:
            assert r.json()["status"] == "committed"
    count, total = batch_stats()
    assert total - sum0 >= 13  # every accepted posting went through the batcher
    assert count - count0 < total - sum0  # ... and some shared a statement
    assert statements_timed() - timed0 >= count - count0  # each batch's statement timed (and each rerun alone)
    assert (await budget.balance(ln["id"]))["available"] == "0.00"

    events = await events_of(budget, ln["id"])
    committed = [e for e in events if e["type"] == "budget.commitment.committed"]
    crossed = [e["data"]["threshold"] for e in events if e["type"] == "budget.line.threshold_crossed"]
    assert len(committed) == 14 and sorted(crossed) == [80, 100]  # each threshold once, whatever the batching
    await check_invariants(budget.runtime, plan["id"], "block")


def test_merged_parameters_sum_deltas_per_line_and_period_and_watch_each_once():
    def params(amount: int, check: bool = True) -> dict:
        return {
            "entries": [{"id": f"e{amount}"}],
            "commitments": [{"id": f"c{amount}"}],
            "events": [],
            "audits": [{"id": f"a{amount}"}],
            "guard": [{"line_id": "L"}],
            "deltas": [
                dict(line_id="L", period="2027-03", da=0, dc=amount, dp=0, ds=0, oa=0, oc=amount, op=0, os=0),
                dict(line_id="R", period="2027-03", da=0, dc=amount, dp=0, ds=0, oa=0, oc=0, op=0, os=0),
            ],
            "watch": [{"line_id": "L", "period": "2027-03", "tpl": {"n": amount}}],
            "thresholds": [80, 100],
            "now": amount,
            "scale": 2,
            "check": check,
        }

    merged = posting._merge([params(3), params(4)])
    assert [e["id"] for e in merged["entries"]] == ["e3", "e4"] and len(merged["commitments"]) == 2
    assert [a["id"] for a in merged["audits"]] == ["a3", "a4"]
    assert {(d["line_id"], d["dc"], d["oc"]) for d in merged["deltas"]} == {("L", 7, 7), ("R", 7, 0)}
    assert merged["watch"] == [{"line_id": "L", "period": "2027-03", "tpl": {"n": 3}}] and merged["now"] == 4
    # Only postings that take money away are merged: an allocation always runs alone.
    assert posting.Batcher.takes(params(5))
    assert not posting.Batcher.takes({**params(5), "deltas": [dict(params(5)["deltas"][0], da=9)]})
    assert Decimal(merged["deltas"][0]["dc"]) == 7


async def test_when_a_batch_gets_no_connection_its_other_postings_run_alone_instead_of_waiting():
    class RanAlone(Exception):
        pass

    gate = asyncio.Event()

    class NoConnection:  # an engine whose pool cannot connect (the database is down)
        def connect(self):
            return self

        async def __aenter__(self):
            await gate.wait()
            raise OSError("connection refused")

        async def __aexit__(self, *exc):
            return False

    async def own_connection():
        raise RanAlone()

    def params(n: int) -> dict:
        return {
            "entries": [],
            "commitments": [],
            "events": [],
            "audits": [],
            "guard": [],
            "watch": [],
            "thresholds": [80, 100],
            "deltas": [dict(line_id="L", period="2027-03", da=0, dc=n, dp=0, ds=0, oa=0, oc=n, op=0, os=0)],
            "now": n,
            "scale": 2,
            "check": True,
        }

    batcher = posting.Batcher(parallel=1)
    blocker = asyncio.create_task(batcher.post(NoConnection(), params(1), own_connection))
    await asyncio.sleep(0.05)  # holds the one slot, waiting for a connection
    a = asyncio.create_task(batcher.post(NoConnection(), params(2), own_connection))
    b = asyncio.create_task(batcher.post(NoConnection(), params(3), own_connection))
    await asyncio.sleep(0.05)
    gate.set()  # the blocker fails; a takes a and b into one batch, whose connection fails too
    results = await asyncio.wait_for(asyncio.gather(blocker, a, b, return_exceptions=True), 5)
    assert [type(r) for r in results] == [OSError, OSError, RanAlone]  # b was not left waiting
