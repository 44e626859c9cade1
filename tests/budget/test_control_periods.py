"""Fiscal years and control periods: a plan's fiscal year may start in any month (named by the year it
ends in), and its overspend check judges available money over the month, the fiscal quarter or the
fiscal year containing a posting's month; no interleaving of concurrent postings overdraws a control
period, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.budget.models import balances, commitments
from tests.budget.conftest import ADMIN, Budget, problem
from tests.budget.test_invariants import check_invariants

pytestmark = pytest.mark.db


async def _plan(budget: Budget, control: str, start: int = 1, activate: bool = True) -> dict:
    body = {
        "name": f"FY27 {control}",
        "fiscal_year": 2027,
        "currency": "EUR",
        "fiscal_year_start": start,
        "control_period": control,
    }
    plan = await budget.ok("POST", "/v1/plans", 201, json=body)
    if activate:
        plan = await budget.ok("POST", f"/v1/plans/{plan['id']}/activate")
    return plan


async def test_a_fiscal_year_from_april_has_its_months_and_quarters_and_is_fixed_once_active(budget):
    plan = await _plan(budget, "month", activate=False)
    ln = await budget.line(plan["id"], "EVENTS")
    r = await budget.c.patch(
        f"/v1/plans/{plan['id']}",
        headers={**ADMIN, "If-Match": '"1"'},
        json={"fiscal_year_start": 4, "control_period": "quarter"},
    )
    assert r.status_code == 200, r.text
    moved = r.json()
    assert (moved["fiscal_year_start"], moved["control_period"]) == (4, "quarter")
    assert moved["periods"][0] == "2026-04" and moved["periods"][-1] == "2027-03"
    plan = await budget.ok("POST", f"/v1/plans/{plan['id']}/activate")
    # The draft's line follows the new calendar: money goes into April 2026, not into April 2027.
    await budget.allocate(ln["id"], "100.00", period="2026-04")
    outside = await budget.c.post(
        "/v1/allocations",
        headers=ADMIN,
        json={"line_id": ln["id"], "period": "2027-04", "amount": "1.00", "currency": "EUR"},
    )
    assert problem(outside, 422)["errors"][0]["field"] == "period"
    await budget.allocate(ln["id"], "50.00", period="2027-02")
    summary = await budget.ok("GET", f"/v1/plans/{plan['id']}/summary")
    assert summary["fiscal_year"] == "FY2027" and (summary["from"], summary["to"]) == ("2026-04", "2027-03")
    quarters = {q["quarter"]: q for q in summary["quarters"]}
    assert quarters["FY2027-Q1"]["allocated"] == "100.00" and quarters["FY2027-Q4"]["allocated"] == "50.00"
    assert quarters["FY2027-Q1"]["periods"] == ["2026-04", "2026-05", "2026-06"]
    assert quarters["FY2027-Q2"]["allocated"] == "0.00"
    locked = await budget.c.patch(
        f"/v1/plans/{plan['id']}",
        headers={**ADMIN, "If-Match": f'"{plan["version"]}"'},
        json={"control_period": "month"},
    )
    body = problem(locked, 409)
    assert body["errors"][0]["field"] == "control_period" and "draft" in body["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"fiscal_year_start": 13}, "fiscal_year_start"),
        ({"fiscal_year_start": 0}, "fiscal_year_start"),
        ({"fiscal_year_start": "april"}, "fiscal_year_start"),
        ({"control_period": "week"}, "control_period"),
    ],
)
async def test_a_bad_fiscal_year_start_or_control_period_is_a_422_naming_it(budget, body, field):
    base = {"name": "x", "fiscal_year": 2027, "currency": "EUR"}
    r = await budget.c.post("/v1/plans", headers=ADMIN, json={**base, **body})
    assert problem(r, 422)["errors"][0]["field"] == field


async def test_control_by_quarter_lets_january_use_march_money_but_not_aprils(budget):
    plan = await _plan(budget, "quarter")
    ln = await budget.line(plan["id"], "MARTECH")
    await budget.allocate(ln["id"], "100.00", period="2027-03")
    assert (await budget.commit(ln["id"], "60.00", period="2027-01")).status_code == 201
    short = problem(await budget.commit(ln["id"], "50.00", period="2027-02"), 409)
    assert short["control_period"] == "FY2027-Q1" and short["shortfall"] == "10.00"
    assert "40.00 EUR available in FY2027-Q1" in short["detail"]
    assert problem(await budget.commit(ln["id"], "1.00", period="2027-04"), 409)["control_period"] == "FY2027-Q2"
    assert (await budget.commit(ln["id"], "40.00", period="2027-02")).status_code == 201
    jan = await budget.balance(ln["id"], "2027-01", "2027-01")
    assert jan["available"] == "-60.00"  # the month is below zero; its quarter is not
    q1 = await budget.balance(ln["id"], "2027-01", "2027-03")
    assert (q1["committed"], q1["available"]) == ("100.00", "0.00")


async def test_control_by_fiscal_year_and_a_transfer_judged_over_it(budget):
    plan = await _plan(budget, "fiscal_year")
    a = await budget.line(plan["id"], "A")
    b = await budget.line(plan["id"], "B")
    await budget.allocate(a["id"], "100.00", period="2027-11")
    assert (await budget.commit(a["id"], "70.00", period="2027-01")).status_code == 201
    move = {"from_line_id": a["id"], "to_line_id": b["id"], "period": "2027-06", "amount": "40.00", "currency": "EUR"}
    r = await budget.c.post("/v1/transfers", headers=ADMIN, json=move)
    assert problem(r, 409)["control_period"] == "FY2027"
    r = await budget.c.post("/v1/transfers", headers=ADMIN, json={**move, "amount": "30.00"})
    assert r.status_code == 201, r.text
    assert (await budget.balance(a["id"]))["available"] == "0.00"


async def test_require_approval_judges_the_control_period_and_an_actual_reports_overspend_over_it(budget):
    body = {"name": "q", "fiscal_year": 2027, "currency": "EUR", "overspend_policy": "require_approval"}
    plan = await budget.ok("POST", "/v1/plans", 201, json={**body, "control_period": "quarter"})
    plan = await budget.ok("POST", f"/v1/plans/{plan['id']}/activate")
    ln = await budget.line(plan["id"], "PR")
    await budget.allocate(ln["id"], "100.00", period="2027-03")
    fits = await budget.commit(ln["id"], "80.00", period="2027-01")
    assert fits.status_code == 201 and fits.json()["status"] == "committed"
    over = await budget.commit(ln["id"], "30.00", period="2027-02")
    assert over.status_code == 201 and over.json()["reason"] == "over_available"
    await budget.ok("POST", f"/v1/commitments/{over.json()['id']}/release")
    actual = {"line_id": ln["id"], "period": "2027-02", "amount": "20.00", "currency": "EUR"}
    assert (await budget.ok("POST", "/v1/actuals", 201, json=actual))["overspend"] is False  # 100 - 80 - 20 = 0
    assert (await budget.ok("POST", "/v1/actuals", 201, json=actual))["overspend"] is True


# ------------------------------------------------------------- no interleaving overdraws

requests = st.lists(
    st.tuples(st.sampled_from(["L1", "L2"]), st.integers(0, 5), st.integers(1, 80)), min_size=2, max_size=12
)


@settings(
    max_examples=int(os.environ.get("BUDGET_PROPERTY_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    control=st.sampled_from(["month", "quarter", "fiscal_year"]),
    funds=st.lists(st.integers(0, 120), min_size=4, max_size=4),
    sequence=requests,
)
async def test_concurrent_commitments_never_overdraw_a_control_period(budget, control, funds, sequence):
    plan = await _plan(budget, control, start=11)  # FY2027: 2026-11 .. 2027-10
    months = plan["periods"]
    root = await budget.line(plan["id"], "ROOT")
    made = {code: await budget.line(plan["id"], code, parent="ROOT") for code in ("L1", "L2")}
    for i, amount in enumerate(funds):  # L1 and L2 each funded in two months
        if amount:
            await budget.allocate(made[("L1", "L2")[i % 2]]["id"], f"{amount}.00", period=months[i])
    results = await asyncio.gather(
        *(budget.commit(made[code]["id"], f"{amount}.00", period=months[m]) for code, m, amount in sequence)
    )
    assert all(r.status_code in (201, 409) for r in results), [r.text for r in results]
    # Every control period of every line (the root's too) is at or above zero available ...
    scopes: dict[tuple[str, str], int] = {}
    async with budget.runtime.transaction(readonly=True) as s:
        rows = (await s.execute(select(balances).where(balances.c.plan_id == plan["id"]))).all()
    for r in rows:
        i = months.index(r.period)
        name = {"month": r.period, "quarter": str(i // 3), "fiscal_year": "FY"}[control]
        key = (r.line_id, name)
        scopes[key] = scopes.get(key, 0) + r.allocated - r.committed - r.pending - r.spent
    assert all(v >= 0 for v in scopes.values()), scopes
    # ... and each refusal was right: money only went out, so what it did not fit into it still does not.
    for (code, m, amount), r in zip(sequence, results, strict=True):
        if r.status_code == 409:
            i = months.index(months[m])
            name = {"month": months[m], "quarter": str(i // 3), "fiscal_year": "FY"}[control]
            left = min(scopes[(made[code]["id"], name)], scopes[(root["id"], name)])
            assert Decimal(amount) * 100 > left, (code, months[m], amount, left)


# Commitments, transfers between the two lines and actuals on commitments, all at once: a transfer
# moves money into the other line, and an actual consumes its commitment (beyond what is left of it,
# the excess is spent: a fact, posted as overspend, never refused).
mixed = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.sampled_from(["L1", "L2"]), st.integers(0, 5), st.integers(1, 80)),
        st.tuples(st.just("transfer"), st.sampled_from(["L1", "L2"]), st.integers(0, 5), st.integers(1, 80)),
        st.tuples(st.just("actual"), st.integers(0, 2), st.integers(0, 0), st.integers(1, 30)),
    ),
    min_size=2,
    max_size=12,
)
HELD = (("L1", 0), ("L2", 1), ("L1", 2))  # the commitments of 20.00 the actuals consume
OTHER = {"L1": "L2", "L2": "L1"}


@settings(
    max_examples=int(os.environ.get("BUDGET_PROPERTY_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    control=st.sampled_from(["month", "quarter", "fiscal_year"]),
    funds=st.lists(st.integers(20, 120), min_size=4, max_size=4),
    sequence=mixed,
)
async def test_concurrent_commitments_transfers_and_actuals_never_overdraw_a_control_period(
    budget, control, funds, sequence
):
    plan = await _plan(budget, control, start=11)  # FY2027: 2026-11 .. 2027-10
    months = plan["periods"]
    root = await budget.line(plan["id"], "ROOT")
    made = {code: await budget.line(plan["id"], code, parent="ROOT") for code in ("L1", "L2")}
    for i, amount in enumerate(funds):  # L1 and L2 each funded in two months, at least 20.00 each
        await budget.allocate(made[("L1", "L2")[i % 2]]["id"], f"{amount}.00", period=months[i])
    held = []
    for code, m in HELD:
        r = await budget.commit(made[code]["id"], "20.00", period=months[m])
        assert r.status_code == 201 and r.json()["status"] == "committed", r.text
        held.append(r.json())

    def call(op: tuple) -> Any:
        kind, a, m, amount = op
        money = {"amount": f"{amount}.00", "currency": "EUR"}
        if kind == "commit":
            return budget.commit(made[a]["id"], f"{amount}.00", period=months[m])
        if kind == "transfer":
            body = {"from_line_id": made[a]["id"], "to_line_id": made[OTHER[a]]["id"], "period": months[m], **money}
            return budget.c.post("/v1/transfers", headers=ADMIN, json=body)
        c = held[a]
        body = {"line_id": c["line_id"], "period": c["period"], "commitment_id": c["id"], **money}
        return budget.c.post("/v1/actuals", headers=ADMIN, json=body)

    results = await asyncio.gather(*(call(op) for op in sequence))
    assert all(r.status_code in (201, 409) for r in results), [r.text for r in results]
    # The ledger is whole: balances equal the entries, committed equals the commitments' open remainders
    # (the sign is judged per control period below, not per month).
    await check_invariants(budget.runtime, plan["id"], "control period", frozenset(months))

    def scope(period: str) -> str:
        i = months.index(period)
        return {"month": period, "quarter": str(i // 3), "fiscal_year": "FY"}[control]

    left: dict[tuple[str, str], int] = {}
    async with budget.runtime.transaction(readonly=True) as s:
        for r in (await s.execute(select(balances).where(balances.c.plan_id == plan["id"]))).all():
            key = (r.line_id, scope(r.period))
            left[key] = left.get(key, 0) + r.allocated - r.committed - r.pending - r.spent
        for c in (await s.execute(select(commitments).where(commitments.c.plan_id == plan["id"]))).all():
            assert c.consumed_minor <= c.amount_minor, c  # never consumed beyond what was committed
    overspent, inflow = set(), Counter[tuple[str, str]]()
    for op, r in zip(sequence, results, strict=True):
        if op[0] == "actual" and r.status_code == 201 and r.json()["overspend"]:
            overspent.add(scope(held[op[1]]["period"]))
        if op[0] == "transfer" and r.status_code == 201:
            inflow[(made[OTHER[op[1]]]["id"], scope(months[op[2]]))] += op[3] * 100
    # Only an actual (a fact) takes a control period below zero; commitments and transfers never do.
    negative = {k: v for k, v in left.items() if v < 0}
    assert all(name in overspent for (_, name) in negative), (negative, overspent)
    # Each refusal was right: money only went out of a scope but for the transfers into it, so what was
    # left when it was refused is at least what is left now less what came in.
    for op, r in zip(sequence, results, strict=True):
        kind, a, m, amount = op
        if r.status_code != 409:
            continue
        if kind == "actual":
            assert "closed" in r.json()["detail"], r.text  # only a fully consumed commitment refuses one
            continue
        assert "short by" in r.json()["detail"], r.text
        line_id, name = made[a]["id"], scope(months[m])
        room = left[(line_id, name)] - inflow[(line_id, name)]
        if kind == "commit":
            room = min(room, left[(root["id"], name)])
        assert amount * 100 > room, (op, room)
