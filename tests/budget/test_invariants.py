"""The ledger's invariants: balances equal a recomputation from the entries, and under policy
`block` no line's available money goes negative, for random operation sequences and under
concurrency on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from decimal import Decimal

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.budget import actuals, allocations, commitments, lines, plans, reversals
from services.budget.lines import ancestors
from services.budget.models import balances, entries
from services.budget.models import commitments as commitments_table
from services.budget.models import lines as lines_table
from shared.errors import Conflict, Invalid
from shared.identity import Principal
from tests.budget.conftest import ADMIN as ADMIN_H
from tests.budget.conftest import problem
from tests.conftest import POSTGRES_URL

ADMIN = Principal("prop", frozenset({"admin"}))
LINES = ("R", "A", "B", "A1")  # R is the root, A and B its children, A1 under A
PERIODS = ("2027-01", "2027-02")

amounts = st.integers(min_value=1, max_value=500).map(lambda n: Decimal(n))
line_ix = st.integers(0, len(LINES) - 1)
period_ix = st.integers(0, len(PERIODS) - 1)
ops = st.one_of(
    st.tuples(st.just("allocate"), line_ix, period_ix, amounts),
    st.tuples(st.just("commit"), line_ix, period_ix, amounts),
    st.tuples(st.just("actual"), line_ix, period_ix, amounts),
    st.tuples(st.just("actual_on_commitment"), st.integers(0, 20), amounts),
    st.tuples(st.just("transfer"), line_ix, line_ix, period_ix, amounts),
    st.tuples(st.just("approve"), st.integers(0, 20)),
    st.tuples(st.just("release"), st.integers(0, 20)),
    st.tuples(st.just("reverse"), st.integers(0, 60)),
)


async def build_plan(uow, policy: str) -> tuple[dict, dict[str, dict]]:
    plan = await plans.create_plan(
        uow,
        ADMIN,
        name=f"prop-{policy}",
        fiscal_year=2027,
        currency="EUR",
        overspend_policy=policy,
        approval_threshold=Decimal("300"),
    )
    await plans.activate_plan(uow, ADMIN, plan_id=plan["id"])
    made: dict[str, dict] = {}
    for code, parent in (("R", None), ("A", "R"), ("B", "R"), ("A1", "A")):
        made[code] = await lines.create_line(uow, ADMIN, plan_id=plan["id"], code=code, name=code, parent_code=parent)
    return plan, made


async def apply(
    postings, uow, op, made, cids: list[str], entry_ids: list[str], overspent: set[str] | None = None
) -> None:
    """Run one operation; an actual (a fact, never refused) that overspends adds its period to `overspent`."""
    kind = op[0]
    if kind in ("allocate", "commit", "actual"):
        _, li, pi, amount = op
        args = dict(line_id=made[LINES[li]]["id"], period=PERIODS[pi], amount=amount, currency="EUR")
        if kind == "allocate":
            entry_ids.append((await allocations.allocate(uow, ADMIN, postings=postings, **args))["id"])
        elif kind == "commit":
            cids.append((await commitments.create_commitment(uow, ADMIN, postings=postings, **args))["id"])
        else:
            posted = await actuals.post_actual(uow, ADMIN, postings=postings, **args)
            entry_ids.append(posted["id"])
            if posted["overspend"] and overspent is not None:
                overspent.add(posted["period"])
    elif kind == "actual_on_commitment" and cids:
        c = await commitments.get_commitment(uow, ADMIN, postings=postings, commitment_id=cids[op[1] % len(cids)])
        posted = await actuals.post_actual(
            uow,
            ADMIN,
            postings=postings,
            line_id=c["line_id"],
            period=c["period"],
            amount=op[2],
            currency="EUR",
            commitment_id=c["id"],
        )
        entry_ids.append(posted["id"])
        if posted["overspend"] and overspent is not None:
            overspent.add(posted["period"])
    elif kind == "transfer":
        _, a, b, pi, amount = op
        t = await allocations.transfer(
            uow,
            ADMIN,
            postings=postings,
            from_line_id=made[LINES[a]]["id"],
            to_line_id=made[LINES[b]]["id"],
            period=PERIODS[pi],
            amount=amount,
            currency="EUR",
        )
        entry_ids.append(t["entries"][0]["id"])
    elif kind in ("approve", "release") and cids:
        cid = cids[op[1] % len(cids)]
        decide = commitments.approve if kind == "approve" else commitments.release
        await decide(uow, ADMIN, postings=postings, commitment_id=cid)
    elif kind == "reverse" and entry_ids:
        await reversals.reverse(uow, ADMIN, postings=postings, entry_id=entry_ids[op[1] % len(entry_ids)])


async def check_invariants(rt, plan_id: str, policy: str, overspent: set[str] = frozenset()) -> None:
    """Balances equal the ledger; under block no intention overdraws (periods where an actual, a fact,
    overspent are exempt from the sign check: the actual was posted and reported, not refused)."""
    async with rt.transaction(readonly=True) as s:
        paths = {
            r.id: r.path for r in (await s.execute(select(lines_table).where(lines_table.c.plan_id == plan_id))).all()
        }
        rows = (await s.execute(select(balances).where(balances.c.plan_id == plan_id))).all()
        recomputed: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for e in (await s.execute(select(entries).where(entries.c.plan_id == plan_id))).all():
            acc = recomputed[(e.line_id, e.period)]
            for i, d in enumerate((e.d_allocated, e.d_committed, e.d_pending, e.d_spent)):
                acc[i] += d
        open_total: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for c in (await s.execute(select(commitments_table).where(commitments_table.c.plan_id == plan_id))).all():
            remaining = c.amount_minor - c.consumed_minor
            if c.status == "committed":
                open_total[(c.line_id, c.period)][0] += remaining
            elif c.status == "pending_approval":
                open_total[(c.line_id, c.period)][1] += remaining
    subtree: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (line_id, period), own in recomputed.items():
        for anc in ancestors(paths[line_id]):
            for i, v in enumerate(own):
                subtree[(anc, period)][i] += v
    for r in rows:
        key = (r.line_id, r.period)
        own = [r.own_allocated, r.own_committed, r.own_pending, r.own_spent]
        sub = [r.allocated, r.committed, r.pending, r.spent]
        assert own == recomputed.get(key, [0, 0, 0, 0]), key
        assert sub == subtree.get(key, [0, 0, 0, 0]), key
        # The committed/pending buckets are exactly the open remainders of the commitments.
        assert [r.own_committed, r.own_pending] == open_total.get(key, [0, 0]), key
        if policy == "block" and r.period not in overspent:
            assert r.allocated - r.committed - r.pending - r.spent >= 0, key


@pytest.mark.db
@settings(
    max_examples=int(os.environ.get("BUDGET_PROPERTY_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(policy=st.sampled_from(["block", "require_approval"]), sequence=st.lists(ops, min_size=1, max_size=25))
async def test_random_operations_keep_balances_equal_to_the_ledger(budget, policy, sequence):
    postings, rt = budget.domain.postings, budget.runtime
    async with rt.unit_of_work() as uow:
        plan, made = await build_plan(uow, policy)
    cids: list[str] = []
    entry_ids: list[str] = []
    overspent: set[str] = set()
    for op in sequence:
        try:
            async with rt.unit_of_work() as uow:
                await apply(postings, uow, op, made, cids, entry_ids, overspent)
        except (Conflict, Invalid):
            pass  # refused: nothing may have been written, which the check below proves
    await check_invariants(rt, plan["id"], policy, overspent)


postgres_only = pytest.mark.skipif(
    os.environ.get("PITCREW_TEST_BACKEND", "sqlite") != "postgres",
    reason="row locks under real concurrency need PostgreSQL",
)


@pytest.mark.postgres_only
@postgres_only
async def test_fifty_parallel_commitments_never_overdraw_one_line(budget):
    plan = await budget.plan()
    root = await budget.line(plan["id"], "ROOT")
    ln = await budget.line(plan["id"], "LEAF", parent="ROOT")
    await budget.allocate(ln["id"], "1000.00")
    results = await asyncio.gather(*(budget.commit(ln["id"], "30.00") for _ in range(50)))
    codes = [r.status_code for r in results]
    assert codes.count(201) == 33 and codes.count(409) == 17, codes
    for r in results:
        if r.status_code == 409:
            assert "short by" in r.json()["detail"]
    for line in (ln, root):
        bal = await budget.balance(line["id"])
        assert bal["committed"] == "990.00" and bal["available"] == "10.00"
    await check_invariants(budget.runtime, plan["id"], "block")


@pytest.mark.postgres_only
@postgres_only
async def test_of_two_commitments_that_each_fit_but_not_together_exactly_one_wins(budget):
    plan = await budget.plan()
    for round_ in range(5):
        ln = await budget.line(plan["id"], f"PAIR{round_}")
        await budget.allocate(ln["id"], "100.00")
        a, b = await asyncio.gather(budget.commit(ln["id"], "60.00"), budget.commit(ln["id"], "60.00"))
        assert sorted([a.status_code, b.status_code]) == [201, 409]
        loser = a if a.status_code == 409 else b
        assert "short by 20.00 EUR" in problem(loser, 409)["detail"]
        assert (await budget.balance(ln["id"]))["available"] == "40.00"


@pytest.mark.postgres_only
@postgres_only
async def test_crossing_postings_under_two_roots_never_deadlock(budget):
    """Transfers both ways between leaves of two roots, commitments, approvals, releases and actuals
    that consume commitments, all at once: the balance rows are always locked in (line id, period)
    order, whether by the posting's single update or by the early lock of the commitment flows, so
    every request ends in 2xx or a 409, never a deadlock or a 500, and the books still add up."""
    plan = await budget.plan(threshold="50.00")
    leaves = []
    for r in ("R1", "R2"):
        await budget.line(plan["id"], r)
        for k in range(2):
            ln = await budget.line(plan["id"], f"{r}-{k}", parent=r)
            leaves.append(ln["id"])
            for per in ("2027-03", "2027-04"):
                await budget.allocate(ln["id"], "500.00", period=per)
    pending = [(await budget.commit(leaves[i % 4], "60.00", period="2027-03")).json() for i in range(8)]
    held = [(await budget.commit(leaves[i % 4], "10.00", period="2027-04")).json() for i in range(8)]
    assert {c["status"] for c in pending} == {"pending_approval"} and {c["status"] for c in held} == {"committed"}
    pending, held = [c["id"] for c in pending], [c["id"] for c in held]

    def transfer(a: str, b: str, per: str):
        return budget.c.post(
            "/v1/transfers",
            headers=ADMIN_H,
            json={"from_line_id": a, "to_line_id": b, "period": per, "amount": "5.00", "currency": "EUR"},
        )

    calls = []
    for i in range(12):
        a, b = leaves[i % 4], leaves[(i + 2) % 4]  # always across the two roots, both directions
        calls += [
            transfer(a, b, "2027-03"),
            transfer(b, a, "2027-04"),
            transfer(a, b, "2027-04"),
            budget.commit(leaves[(i + 1) % 4], "7.00", period=("2027-03", "2027-04")[i % 2]),
        ]
    for i, cid in enumerate(pending):
        calls.append(budget.c.post(f"/v1/commitments/{cid}/{('approve', 'release')[i % 2]}", headers=ADMIN_H))
    for i, cid in enumerate(held):
        calls.append(
            budget.c.post(
                "/v1/actuals",
                headers=ADMIN_H,
                json={
                    "line_id": leaves[(i + 3) % 4],
                    "period": "2027-04",
                    "amount": "4.00",
                    "currency": "EUR",
                    "commitment_id": cid,
                },
            )
        )
    results = await asyncio.gather(*calls)
    bad = [r.text for r in results if r.status_code not in (200, 201, 409)]
    assert not bad, bad
    assert sum(r.status_code in (200, 201) for r in results) >= len(results) - 4
    await check_invariants(budget.runtime, plan["id"], "block")


async def terminate_backends(dbname: str) -> int:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        return await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> "
            "pg_backend_pid()",
            dbname,
        )
    finally:
        await conn.close()


@pytest.mark.postgres_only
@postgres_only
async def test_a_lost_database_connection_answers_503_and_the_next_request_works(budget):
    plan = await budget.plan()
    # The database restarts, as far as this service's pooled connections can tell.
    assert await terminate_backends(budget.runtime.db.engine.url.database) >= 1
    r = await budget.c.get(f"/v1/plans/{plan['id']}", headers=ADMIN_H)
    body = problem(r, 503)
    assert r.headers["Retry-After"] == "1" and "retry" in body["detail"]
    assert (await budget.ok("GET", f"/v1/plans/{plan['id']}"))["id"] == plan["id"]


@pytest.mark.postgres_only
@postgres_only
async def test_a_posting_that_loses_its_connection_answers_503_writes_nothing_and_the_retry_posts_once(budget):
    """The one-statement posting goes to the driver directly (no BEGIN): a broken connection must still be
    dropped from the pool and answered as a 503, like every other statement."""
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "LEAF")
    await budget.allocate(ln["id"], "100.00")  # the line and plan are now cached: the next posting is one statement
    assert await terminate_backends(budget.runtime.db.engine.url.database) >= 1
    r = await budget.commit(ln["id"], "30.00")
    assert r.headers["Retry-After"] == "1", problem(r, 503)
    assert (await budget.commit(ln["id"], "30.00")).status_code == 201
    bal = await budget.balance(ln["id"])
    assert bal["committed"] == "30.00" and bal["available"] == "70.00"
