"""Postings built from the cached line and plan (both databases): the writer checks they are still
current, so a change made since (by this process or another) is never posted past."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.budget.conftest import ADMIN, problem, who

pytestmark = pytest.mark.db

EMEA = who("finance", scopes=("region:EMEA",), subject="erin")


async def entries_of(budget, line_id: str) -> int:
    async with budget.runtime.transaction(readonly=True) as s:
        return int((await s.execute(text("SELECT count(*) FROM entries WHERE line_id = :l"), {"l": line_id})).scalar())


async def test_a_period_closed_after_the_line_was_cached_refuses_the_next_posting(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "TV")
    await budget.allocate(ln["id"], "100.00")
    assert (await budget.commit(ln["id"], "1.00")).status_code == 201  # line and plan now cached
    await budget.ok("POST", f"/v1/plans/{plan['id']}/periods/2027-03/close")
    before = await entries_of(budget, ln["id"])

    body = problem(await budget.commit(ln["id"], "1.00"), 409)

    assert "2027-03" in body["detail"] and "closed" in body["detail"]
    assert await entries_of(budget, ln["id"]) == before


async def test_a_line_moved_out_of_a_users_scope_after_caching_is_refused_to_that_user(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "EMEA-WEB", region="EMEA")
    await budget.allocate(ln["id"], "100.00")
    assert (await budget.commit(ln["id"], "1.00", headers=EMEA)).status_code == 201  # cached for EMEA
    moved = await budget.c.post(
        f"/v1/plans/{plan['id']}/import",
        content=b"code,name,region\nEMEA-WEB,Web,APAC\n",
        headers={**ADMIN, "content-type": "text/csv"},
    )
    assert moved.status_code == 200 and moved.json()["lines_updated"] == 1, moved.text
    before = await entries_of(budget, ln["id"])

    r = await budget.commit(ln["id"], "1.00", headers=EMEA)

    assert r.status_code in (403, 422), r.text  # the scope refusal of an uncached posting
    assert await entries_of(budget, ln["id"]) == before


async def test_a_line_changed_by_another_process_is_read_again_before_posting(budget):
    """Another worker (or an operator) changed the row behind this process's cache: the guard sees it."""
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "EMEA-EVENTS", region="EMEA")
    await budget.allocate(ln["id"], "100.00")
    assert (await budget.commit(ln["id"], "1.00", headers=EMEA)).status_code == 201
    async with budget.runtime.transaction() as s:
        await s.execute(
            text("UPDATE lines SET dimensions = :d, version = version + 1 WHERE id = :l"),
            {"d": '{"region":"APAC"}', "l": ln["id"]},
        )
    before = await entries_of(budget, ln["id"])

    r = await budget.commit(ln["id"], "1.00", headers=EMEA)

    assert r.status_code in (403, 422), r.text
    assert await entries_of(budget, ln["id"]) == before
    assert (await budget.commit(ln["id"], "1.00")).status_code == 201  # an unscoped user still posts


async def test_a_closed_plan_refuses_postings_on_its_cached_lines(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "TV")
    await budget.allocate(ln["id"], "100.00")
    assert (await budget.commit(ln["id"], "1.00")).status_code == 201
    await budget.ok("POST", f"/v1/plans/{plan['id']}/close")

    assert (await budget.commit(ln["id"], "1.00")).status_code == 409
    assert (await budget.balance(ln["id"]))["committed"] == "1.00"
