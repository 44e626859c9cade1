"""Plans, lines, postings and balances through the HTTP API (in-process, minted identities)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from services.budget.models import commitments, entries
from tests.budget.conftest import ADMIN, FINANCE, problem, who

pytestmark = pytest.mark.db


async def test_plan_lines_allocation_commitment_actual_and_subtree_balances(budget):
    plan = await budget.plan(threshold="10000.00")
    assert plan["status"] == "active" and plan["approval_threshold"] == "10000.00"
    emea = await budget.line(plan["id"], "EMEA", region="EMEA")
    events = await budget.line(plan["id"], "EMEA-EVENTS", parent="EMEA", channel="events")
    assert events["dimensions"] == {"region": "EMEA", "channel": "events"}  # inherited region
    assert events["parent_code"] == "EMEA" and events["depth"] == 1
    await budget.allocate(events["id"], "50000.00")
    await budget.allocate(emea["id"], "1000.00")
    r = await budget.commit(events["id"], "8000.00", external_ref="PO-1001", memo="booth")
    assert r.status_code == 201, r.text
    po = r.json()
    assert po["status"] == "committed" and po["remaining"] == "8000.00"
    actual = await budget.ok(
        "POST",
        "/v1/actuals",
        201,
        json={
            "line_id": events["id"],
            "period": "2027-03",
            "amount": "3000.00",
            "currency": "EUR",
            "commitment_id": po["id"],
            "external_ref": "INV-77",
        },
    )
    assert actual["commitment_status"] == "committed" and actual["consumed"] == "3000.00"
    assert await budget.balance(events["id"]) == {
        "line_id": events["id"],
        "line_code": "EMEA-EVENTS",
        "from": "2027-01",
        "to": "2027-12",
        "allocated": "50000.00",
        "committed": "5000.00",
        "pending": "0.00",
        "spent": "3000.00",
        "available": "42000.00",
        "currency": "EUR",
    }
    parent = await budget.balance(emea["id"])
    assert parent["allocated"] == "51000.00" and parent["available"] == "43000.00"
    # Another period range sees nothing.
    assert (await budget.balance(emea["id"], "2027-04", "2027-12"))["allocated"] == "0.00"
    tree = await budget.ok("GET", f"/v1/plans/{plan['id']}/lines")
    (root,) = tree["items"]
    assert root["code"] == "EMEA" and root["balance"]["spent"] == "3000.00"
    assert root["children"][0]["code"] == "EMEA-EVENTS"


async def test_block_refuses_overdraw_with_the_shortfall_and_writes_nothing(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "SEARCH", channel="search")
    await budget.allocate(ln["id"], "1000.00")
    tables = (entries, commitments, budget.runtime.infra.outbox)

    async def counts() -> list[int]:
        async with budget.runtime.transaction(readonly=True) as s:
            return [await s.scalar(select(func.count()).select_from(t)) for t in tables]

    before = await counts()
    body = problem(await budget.commit(ln["id"], "2250.00"), 409)
    assert "short by 1250.00 EUR" in body["detail"] and body["shortfall"] == "1250.00"
    # The entry, the commitment row and the event are written before the balance check: all rolled back.
    assert await counts() == before
    assert (await budget.balance(ln["id"]))["available"] == "1000.00"


async def test_threshold_makes_pending_that_holds_money_then_approve_and_release(budget):
    plan = await budget.plan(threshold="10000.00")
    ln = await budget.line(plan["id"], "EVENTS")
    await budget.allocate(ln["id"], "50000.00")
    big = (await budget.commit(ln["id"], "25000.00")).json()
    assert big["status"] == "pending_approval" and big["reason"] == "threshold"
    bal = await budget.balance(ln["id"])
    assert bal["pending"] == "25000.00" and bal["available"] == "25000.00"
    # A marketer may not approve; finance may.
    problem(await budget.c.post(f"/v1/commitments/{big['id']}/approve", headers=who("marketer")), 403)
    ok = await budget.ok("POST", f"/v1/commitments/{big['id']}/approve", headers=FINANCE)
    assert ok["status"] == "committed" and ok["decided_by"] == "fiona"
    bal = await budget.balance(ln["id"])
    assert bal["pending"] == "0.00" and bal["committed"] == "25000.00"
    problem(await budget.c.post(f"/v1/commitments/{big['id']}/approve", headers=FINANCE), 409)
    released = await budget.ok("POST", f"/v1/commitments/{big['id']}/release", headers=FINANCE)
    assert released["status"] == "released"
    assert (await budget.balance(ln["id"]))["available"] == "50000.00"


async def test_require_approval_turns_over_available_into_pending(budget):
    plan = await budget.plan(policy="require_approval")
    ln = await budget.line(plan["id"], "SOCIAL")
    await budget.allocate(ln["id"], "100.00")
    c = (await budget.commit(ln["id"], "150.00")).json()
    assert c["status"] == "pending_approval" and c["reason"] == "over_available"
    assert (await budget.balance(ln["id"]))["available"] == "-50.00"


async def test_transfer_moves_money_inside_one_plan_only(budget):
    plan = await budget.plan()
    a = await budget.line(plan["id"], "A")
    b = await budget.line(plan["id"], "B")
    await budget.allocate(a["id"], "500.00")
    t = await budget.ok(
        "POST",
        "/v1/transfers",
        201,
        json={
            "from_line_id": a["id"],
            "to_line_id": b["id"],
            "period": "2027-03",
            "amount": "200.00",
            "currency": "EUR",
        },
    )
    assert [e["kind"] for e in t["entries"]] == ["transfer_out", "transfer_in"]
    assert (await budget.balance(a["id"]))["allocated"] == "300.00"
    assert (await budget.balance(b["id"]))["allocated"] == "200.00"
    body = problem(
        await budget.c.post(
            "/v1/transfers",
            headers=ADMIN,
            json={
                "from_line_id": a["id"],
                "to_line_id": b["id"],
                "period": "2027-03",
                "amount": "400.00",
                "currency": "EUR",
            },
        ),
        409,
    )
    assert "short by 100.00 EUR" in body["detail"]
    other = await budget.plan()
    c = await budget.line(other["id"], "C")
    body = problem(
        await budget.c.post(
            "/v1/transfers",
            headers=ADMIN,
            json={
                "from_line_id": a["id"],
                "to_line_id": c["id"],
                "period": "2027-03",
                "amount": "1.00",
                "currency": "EUR",
            },
        ),
        422,
    )
    assert body["errors"][0]["field"] == "to_line_id"


async def test_reversal_undoes_an_actual_and_restores_its_commitment(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "PRINT")
    alloc = await budget.allocate(ln["id"], "1000.00")
    po = (await budget.commit(ln["id"], "400.00")).json()
    act = await budget.ok(
        "POST",
        "/v1/actuals",
        201,
        json={
            "line_id": ln["id"],
            "period": "2027-03",
            "amount": "400.00",
            "currency": "EUR",
            "commitment_id": po["id"],
        },
    )
    assert act["commitment_status"] == "closed"
    rev = await budget.ok("POST", f"/v1/entries/{act['id']}/reverse", 201, json={"memo": "wrong invoice"})
    assert {e["kind"] for e in rev["entries"]} == {"reversal"} and len(rev["entries"]) == 2
    bal = await budget.balance(ln["id"])
    assert bal["spent"] == "0.00" and bal["committed"] == "400.00"
    assert (await budget.ok("GET", f"/v1/commitments/{po['id']}"))["status"] == "committed"
    problem(await budget.c.post(f"/v1/entries/{act['id']}/reverse", headers=ADMIN), 409)  # twice
    problem(await budget.c.post(f"/v1/entries/{rev['entries'][0]['id']}/reverse", headers=ADMIN), 409)
    # Reversing the allocation would leave the open commitment uncovered: refused under block.
    body = problem(await budget.c.post(f"/v1/entries/{alloc['id']}/reverse", headers=ADMIN), 409)
    assert "short by 400.00 EUR" in body["detail"]


async def test_entries_are_cursor_paginated_in_order(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "WEB")
    for i in range(5):
        await budget.allocate(ln["id"], f"{i + 1}.00")
    seen, cursor = [], None
    while True:
        page = await budget.ok("GET", f"/v1/lines/{ln['id']}/entries?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        seen += [e["amount"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["1.00", "2.00", "3.00", "4.00", "5.00"]


async def test_fx_rate_on_or_before_the_entry_date_and_missing_rate_is_422(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "US")
    body = problem(
        await budget.c.post(
            "/v1/allocations",
            headers=ADMIN,
            json={"line_id": ln["id"], "period": "2027-03", "amount": "100.00", "currency": "USD"},
        ),
        422,
    )
    assert "USD/EUR" in body["detail"] and "2027-03-01" in body["detail"]
    assert body["errors"][0]["field"] == "currency"
    await budget.ok(
        "POST", "/v1/fx-rates", 201, json={"base": "USD", "quote": "EUR", "date": "2027-02-15", "rate": "0.90"}
    )
    await budget.ok(
        "POST", "/v1/fx-rates", 201, json={"base": "USD", "quote": "EUR", "date": "2027-03-10", "rate": "0.95"}
    )
    e = await budget.ok(
        "POST",
        "/v1/allocations",
        201,
        json={"line_id": ln["id"], "period": "2027-03", "amount": "100.00", "currency": "USD", "date": "2027-03-05"},
    )
    assert e["amount"] == "90.00" and e["original_amount"] == "100.00" and e["fx_rate"] == "0.90"
    e = await budget.ok(
        "POST",
        "/v1/allocations",
        201,
        json={"line_id": ln["id"], "period": "2027-03", "amount": "100.00", "currency": "USD", "date": "2027-03-20"},
    )
    assert e["amount"] == "95.00"
    rates = await budget.ok("GET", "/v1/fx-rates?base=USD&limit=1")
    assert len(rates["items"]) == 1 and rates["next_cursor"]


async def test_patch_plan_needs_the_current_version(budget):
    plan = await budget.plan(activate=False)
    r = await budget.c.get(f"/v1/plans/{plan['id']}", headers=ADMIN)
    assert r.headers["etag"] == '"1"'
    problem(await budget.c.patch(f"/v1/plans/{plan['id']}", headers=ADMIN, json={"name": "x"}), 428)
    ok = await budget.c.patch(
        f"/v1/plans/{plan['id']}",
        headers={**ADMIN, "If-Match": '"1"'},
        json={"name": "FY27 EMEA", "approval_threshold": "500.00"},
    )
    assert ok.status_code == 200 and ok.json()["version"] == 2 and ok.json()["approval_threshold"] == "500.00"
    problem(
        await budget.c.patch(f"/v1/plans/{plan['id']}", headers={**ADMIN, "If-Match": '"1"'}, json={"name": "stale"}),
        412,
    )


async def test_closed_period_refuses_entries_and_names_the_period(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "TV")
    await budget.ok("POST", f"/v1/plans/{plan['id']}/periods/2027-03/close")
    body = problem(
        await budget.c.post(
            "/v1/allocations",
            headers=ADMIN,
            json={"line_id": ln["id"], "period": "2027-03", "amount": "1.00", "currency": "EUR"},
        ),
        409,
    )
    assert "2027-03" in body["detail"] and "closed" in body["detail"]
    await budget.allocate(ln["id"], "1.00", period="2027-04")
    closed = await budget.ok("POST", f"/v1/plans/{plan['id']}/close")
    assert closed["status"] == "closed"
    body = problem(
        await budget.c.post(
            "/v1/allocations",
            headers=ADMIN,
            json={"line_id": ln["id"], "period": "2027-04", "amount": "1.00", "currency": "EUR"},
        ),
        409,
    )
    assert "closed" in body["detail"]


async def test_an_actual_cannot_consume_a_commitment_dated_in_a_closed_period(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "OOH")
    await budget.allocate(ln["id"], "1000.00")
    po = (await budget.commit(ln["id"], "300.00")).json()
    await budget.ok("POST", f"/v1/plans/{plan['id']}/periods/2027-03/close")
    await budget.allocate(ln["id"], "1000.00", period="2027-04")
    body = problem(
        await budget.c.post(
            "/v1/actuals",
            headers=ADMIN,
            json={
                "line_id": ln["id"],
                "period": "2027-04",
                "amount": "100.00",
                "currency": "EUR",
                "commitment_id": po["id"],
            },
        ),
        409,
    )
    assert "2027-03" in body["detail"]
    problem(await budget.c.post(f"/v1/commitments/{po['id']}/release", headers=ADMIN), 409)
    assert (await budget.balance(ln["id"]))["spent"] == "0.00"


async def test_free_text_survives_the_posting_statement_unchanged(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "TEXT")
    await budget.allocate(ln["id"], "100.00")
    memo = 'He said "50%" \\ {"not": "json"} \'quoted\' ünïcödé ✓ 日本 \n tab\t end'
    r = await budget.commit(ln["id"], "10.00", memo=memo, vendor="Ä&B <GmbH>", external_ref='PO-"7"')
    assert r.status_code == 201, r.text
    c = r.json()
    assert (c["memo"], c["vendor"], c["external_ref"]) == (memo, "Ä&B <GmbH>", 'PO-"7"')
    got = await budget.ok("GET", f"/v1/commitments/{c['id']}")
    assert (got["memo"], got["vendor"], got["external_ref"], got["date"]) == (
        memo,
        "Ä&B <GmbH>",
        'PO-"7"',
        "2027-03-01",
    )
    page = await budget.ok("GET", f"/v1/lines/{ln['id']}/entries")
    assert page["items"][-1]["memo"] == memo and page["items"][-1]["vendor"] == "Ä&B <GmbH>"


async def test_postings_follow_plan_and_line_changes_made_after_an_earlier_posting(budget):
    """The PostgreSQL ledger reuses the line and plan it read for an earlier posting only while they are
    unchanged (checked inside the posting's statement); every change below must show in the next posting."""
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "EVENTS", region="EMEA")
    await budget.allocate(ln["id"], "1000.00")
    first = await budget.commit(ln["id"], "100.00")
    assert first.status_code == 201 and first.json()["status"] == "committed"
    # A threshold set afterwards applies to the next commitment.
    await budget.ok(
        "PATCH", f"/v1/plans/{plan['id']}", headers={**ADMIN, "If-Match": '"2"'}, json={"approval_threshold": "50.00"}
    )
    c = (await budget.commit(ln["id"], "60.00")).json()
    assert (c["status"], c["reason"]) == ("pending_approval", "threshold")
    # Under block 5000.00 does not fit; under require_approval it is held for approval instead.
    assert (await budget.commit(ln["id"], "5000.00")).status_code == 409
    await budget.ok(
        "PATCH",
        f"/v1/plans/{plan['id']}",
        headers={**ADMIN, "If-Match": '"3"'},
        json={"overspend_policy": "require_approval", "approval_threshold": None},
    )
    c = (await budget.commit(ln["id"], "5000.00")).json()
    assert (c["status"], c["reason"]) == ("pending_approval", "over_available")
    # The line moves to another region by CSV import: a caller scoped to the old one is refused.
    emea = who("marketer", scopes=("region:EMEA",))
    assert (await budget.commit(ln["id"], "1.00", headers=emea)).status_code == 201
    r = await budget.c.post(
        f"/v1/plans/{plan['id']}/import",
        headers={**ADMIN, "Content-Type": "text/csv"},
        content="code,region\nEVENTS,APAC\n",
    )
    assert r.status_code == 200, r.text
    problem(await budget.commit(ln["id"], "1.00", headers=emea), 403)
    # A closed period and a closed plan refuse the next posting.
    await budget.ok("POST", f"/v1/plans/{plan['id']}/periods/2027-03/close")
    assert "2027-03" in problem(await budget.commit(ln["id"], "1.00"), 409)["detail"]
    await budget.allocate(ln["id"], "1.00", period="2027-04")
    await budget.ok("POST", f"/v1/plans/{plan['id']}/close")
    assert (
        "closed"
        in problem(
            await budget.c.post(
                "/v1/allocations",
                headers=ADMIN,
                json={"line_id": ln["id"], "period": "2027-04", "amount": "1.00", "currency": "EUR"},
            ),
            409,
        )["detail"]
    )
    assert "closed" in problem(await budget.commit(ln["id"], "1.00", period="2027-04"), 409)["detail"]
