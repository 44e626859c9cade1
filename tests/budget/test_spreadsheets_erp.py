"""CSV import/export, the plan summary with pacing, and the ERP ingest endpoints."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select

from services.budget import reports
from services.budget.models import balances, commitments, entries, lines
from shared.identity import Principal
from tests.budget.conftest import ADMIN, problem, who

pytestmark = pytest.mark.db

CSV = "text/csv"
ERP = who("partner", subject="webhook:erp")


async def test_csv_import_builds_the_tree_and_posts_allocations_then_exports(budget):
    plan = await budget.plan()
    body = (
        "code,parent_code,name,region,channel,period,amount,currency\n"
        "EMEA,,EMEA,EMEA,,,,\n"
        "EMEA-EVENTS,EMEA,EMEA events,,events,2027-03,50000.00,EUR\n"
        "EMEA-EVENTS,,,,,2027-04,25000.00,\n"
        "EMEA-SEARCH,EMEA,EMEA search,,search,2027-03,1000.50,EUR\n"
    )
    r = await budget.c.post(f"/v1/plans/{plan['id']}/import", content=body, headers={**ADMIN, "content-type": CSV})
    assert r.status_code == 200, r.text
    assert r.json() | {"rows": 4} == {
        "plan_id": plan["id"],
        "rows": 4,
        "lines_created": 3,
        "lines_updated": 0,
        "allocations_posted": 3,
    }
    tree = await budget.ok("GET", f"/v1/plans/{plan['id']}/lines")
    (emea,) = tree["items"]
    assert emea["balance"]["allocated"] == "76000.50"
    assert {c["code"]: c["dimensions"] for c in emea["children"]} == {
        "EMEA-EVENTS": {"region": "EMEA", "channel": "events"},
        "EMEA-SEARCH": {"region": "EMEA", "channel": "search"},
    }
    summary = await budget.ok("GET", f"/v1/plans/{plan['id']}/summary?group_by=channel&from=2027-03&to=2027-03")
    assert {g["group"]["channel"]: g["allocated"] for g in summary["groups"]} == {
        "events": "50000.00",
        "search": "1000.50",
    }
    pacing = summary["total"]["pacing"]
    assert pacing["spent_share"] == "0.0000" and "elapsed_share" in pacing
    export = await budget.c.get(f"/v1/plans/{plan['id']}/export", headers=ADMIN)
    assert export.headers["content-type"].startswith("text/csv")
    rows = export.text.splitlines()
    assert rows[0].startswith("code,parent_code,name,region,channel")
    assert rows[1].startswith("EMEA,,EMEA,EMEA,") and "76000.50" in rows[1]
    assert len(rows) == 4


async def test_one_bad_row_rejects_the_whole_file_and_every_bad_row_is_reported(budget):
    plan = await budget.plan()
    body = (
        "code,parent_code,name,channel,period,amount,currency\n"
        "OK,,Fine,search,2027-03,100.00,EUR\n"
        "NEG,,Negative,,2027-03,-5.00,EUR\n"
        "CUR,,Bad currency,,2027-03,5.00,XXX\n"
        "DEC,,Too precise,,2027-03,5.001,EUR\n"
        "ORPHAN,NOPE,No parent,,,,\n"
        "PER,,Bad period,,2026-12,5.00,EUR\n"
        ",,No code,,,,\n"
        "FX,,No rate,,2027-03,5.00,USD\n"
        f"LONG,,{'n' * 201},,,,\n"
        "a b/c,,Bad code,,,,\n"
        f"CH,,Long channel,{'c' * 101},,,\n"
        "HUGE,,Huge,,2027-03,1e999999999,EUR\n"
    )
    r = await budget.c.post(f"/v1/plans/{plan['id']}/import", content=body, headers={**ADMIN, "content-type": CSV})
    report = problem(r, 422)
    assert [row["row"] for row in report["rows"]] == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    fields = {e["field"] for e in report["errors"]}
    assert {
        "rows[3].amount",
        "rows[4].currency",
        "rows[5].amount",
        "rows[6].parent_code",
        "rows[7].period",
        "rows[8].code",
        "rows[9].currency",
        "rows[10].name",
        "rows[11].code",
        "rows[12].channel",
        "rows[13].amount",
    } <= fields
    assert "nothing was imported" in report["detail"]
    async with budget.runtime.transaction(readonly=True) as s:
        assert await s.scalar(select(func.count()).select_from(lines).where(lines.c.plan_id == plan["id"])) == 0
        assert await s.scalar(select(func.count()).select_from(entries).where(entries.c.plan_id == plan["id"])) == 0


async def test_summary_pacing_compares_elapsed_time_with_spend(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "SOCIAL", channel="social")
    await budget.allocate(ln["id"], "1000.00", period="2027-01")
    await budget.ok(
        "POST",
        "/v1/actuals",
        201,
        json={"line_id": ln["id"], "period": "2027-01", "amount": "900.00", "currency": "EUR"},
    )
    async with budget.runtime.unit_of_work(readonly=True) as uow:
        result = await reports.summary(
            uow,
            Principal("x", frozenset({"admin"})),
            plan_id=plan["id"],
            group_by="channel",
            start="2027-01",
            end="2027-01",
            today=dt.date(2027, 1, 16),
        )
    pacing = result["groups"][0]["pacing"]
    assert pacing == {
        "elapsed_share": "0.5161",
        "spent_share": "0.9000",
        "consumed_share": "0.9000",
        "status": "overspending",
    }


async def test_erp_purchase_orders_upsert_commitments_idempotently_and_invoices_consume_them(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "MARTECH")
    await budget.allocate(ln["id"], "10000.00")
    po = {
        "action": "created",
        "po_number": "PO-9",
        "revision": 1,
        "fiscal_year": 2027,
        "budget_line": "MARTECH",
        "period": "2027-03",
        "amount": "4000.00",
        "currency": "EUR",
        "vendor": "Acme",
        "description": "licences",
    }
    r = await budget.c.post("/v1/erp/purchase-orders", json=po, headers=ERP)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert r.json()["external_ref"] == "PO-9" and r.json()["vendor"] == "Acme"
    again = await budget.c.post("/v1/erp/purchase-orders", json=po, headers=ERP)
    assert again.status_code == 200 and again.json()["id"] == cid
    assert (await budget.balance(ln["id"]))["committed"] == "4000.00"
    changed = await budget.ok(
        "POST",
        "/v1/erp/purchase-orders",
        headers=ERP,
        json={**po, "action": "changed", "revision": 2, "amount": "5000.00"},
    )
    assert changed["id"] == cid and changed["amount"] == "5000.00" and changed["external_revision"] == 2
    assert (await budget.balance(ln["id"]))["committed"] == "5000.00"
    inv = {
        "invoice_number": "INV-1",
        "po_number": "PO-9",
        "fiscal_year": 2027,
        "budget_line": "MARTECH",
        "period": "2027-03",
        "amount": "2000.00",
        "currency": "EUR",
        "vendor": "Acme",
    }
    r = await budget.c.post("/v1/erp/invoices", json=inv, headers=ERP)
    assert r.status_code == 201 and r.json()["commitment_id"] == cid
    assert (await budget.c.post("/v1/erp/invoices", json=inv, headers=ERP)).status_code == 200
    bal = await budget.balance(ln["id"])
    assert bal["committed"] == "3000.00" and bal["spent"] == "2000.00" and bal["available"] == "5000.00"
    cancelled = await budget.ok(
        "POST", "/v1/erp/purchase-orders", headers=ERP, json={"action": "cancelled", "po_number": "PO-9", "revision": 3}
    )
    assert cancelled["status"] == "released"
    assert (await budget.balance(ln["id"]))["committed"] == "0.00"
    held = await budget.ok(  # an invoice is a fact: a line code no plan has keeps it in suspense, not a 422
        "POST", "/v1/erp/invoices", 202, headers=ERP, json={**inv, "invoice_number": "INV-2", "budget_line": "NOPE"}
    )
    assert (held["kind"], held["status"]) == ("invoice", "waiting") and "'NOPE'" in held["reason"]
    problem(await budget.c.post("/v1/erp/purchase-orders", headers=who("marketer"), json=po), 403)


async def test_the_same_erp_document_delivered_several_times_at_once_is_written_once(budget):
    """ERPs retry: copies of one purchase order, or of one invoice, arriving together all succeed, one of
    them as the creation (201) and the others as replays (200); nothing is written twice."""
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "MARTECH")
    await budget.allocate(ln["id"], "10000.00")
    po = {
        "action": "created",
        "po_number": "PO-77",
        "revision": 1,
        "fiscal_year": 2027,
        "budget_line": "MARTECH",
        "period": "2027-03",
        "amount": "4000.00",
        "currency": "EUR",
        "vendor": "Acme",
    }
    answers = await asyncio.gather(*(budget.c.post("/v1/erp/purchase-orders", json=po, headers=ERP) for _ in range(4)))
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 201], [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    inv = {
        "invoice_number": "INV-77",
        "po_number": "PO-77",
        "fiscal_year": 2027,
        "budget_line": "MARTECH",
        "period": "2027-03",
        "amount": "1000.00",
        "currency": "EUR",
        "vendor": "Acme",
    }
    answers = await asyncio.gather(*(budget.c.post("/v1/erp/invoices", json=inv, headers=ERP) for _ in range(4)))
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 201], [r.text for r in answers]
    bal = await budget.balance(ln["id"])
    assert bal["committed"] == "3000.00" and bal["spent"] == "1000.00" and bal["available"] == "6000.00"
    async with budget.runtime.transaction(readonly=True) as s:
        assert await s.scalar(select(func.count()).select_from(entries).where(entries.c.kind == "actual")) == 1


async def test_two_commitments_racing_for_one_external_ref_are_201_and_409_never_500(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "EVENTS")
    await budget.allocate(ln["id"], "1000.00")
    answers = await asyncio.gather(*(budget.commit(ln["id"], "10.00", external_ref="PO-RACE") for _ in range(4)))
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409], [r.text for r in answers]
    for r in answers:
        if r.status_code == 409:
            problem(r, 409)
    assert (await budget.balance(ln["id"]))["committed"] == "10.00"


async def _held_matches_open_commitments(budget) -> None:
    """Every line's own committed money is exactly the open remainder of its committed commitments."""
    async with budget.runtime.transaction(readonly=True) as s:
        held = dict(
            (
                await s.execute(
                    select(balances.c.line_id, func.sum(balances.c.own_committed)).group_by(balances.c.line_id)
                )
            ).all()
        )
        c = commitments.c
        open_ = dict(
            (
                await s.execute(
                    select(c.line_id, func.sum(c.amount_minor - c.consumed_minor))
                    .where(c.status == "committed")
                    .group_by(c.line_id)
                )
            ).all()
        )
    assert {k: int(v) for k, v in held.items() if v} == {k: int(v) for k, v in open_.items() if v}


async def test_erp_changes_racing_a_release_or_each_other_keep_balances_true(budget):
    """On PostgreSQL these raced: a change read the order before a concurrent release locked it and
    moved money the release had just freed (committed money no order held), and of two revisions
    sent together the older could win. Now both judge the order again under its lock."""
    plan = await budget.plan()
    await budget.allocate((await budget.line(plan["id"], "MARTECH"))["id"], "100000.00")
    await budget.allocate((await budget.line(plan["id"], "EVENTS"))["id"], "100000.00")
    for i in range(6):
        po = {
            "action": "created",
            "po_number": f"PO-R{i}",
            "revision": 1,
            "fiscal_year": 2027,
            "budget_line": "MARTECH",
            "period": "2027-03",
            "amount": "10.00",
            "currency": "EUR",
        }
        cid = (await budget.ok("POST", "/v1/erp/purchase-orders", 201, headers=ERP, json=po))["id"]
        moved = {
            **po,
            "action": "changed",
            "revision": 9,
            "amount": "50.00",
            "budget_line": "EVENTS" if i % 2 else "MARTECH",
            "period": "2027-04" if i % 3 else "2027-03",
        }
        release, change = await asyncio.gather(
            budget.c.post(f"/v1/commitments/{cid}/release", headers=ADMIN),
            budget.c.post("/v1/erp/purchase-orders", headers=ERP, json=moved),
        )
        assert release.status_code in (200, 409) and change.status_code in (200, 409), (release.text, change.text)
        await _held_matches_open_commitments(budget)

        newer = {**po, "action": "changed", "revision": 3, "amount": "30.00"}
        older = {**po, "po_number": f"PO-S{i}", "action": "changed", "revision": 2, "amount": "20.00"}
        await budget.ok("POST", "/v1/erp/purchase-orders", 201, headers=ERP, json={**po, "po_number": f"PO-S{i}"})
        answers = await asyncio.gather(
            budget.c.post("/v1/erp/purchase-orders", headers=ERP, json={**newer, "po_number": f"PO-S{i}"}),
            budget.c.post("/v1/erp/purchase-orders", headers=ERP, json=older),
        )
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
        async with budget.runtime.transaction(readonly=True) as s:
            row = (await s.execute(select(commitments).where(commitments.c.external_ref == f"PO-S{i}"))).one()
        assert (row.external_revision, row.amount_minor) == (3, 3000)
        await _held_matches_open_commitments(budget)


async def test_an_erp_change_cannot_move_an_order_to_another_plan_and_a_cancel_respects_closed_months(budget):
    fy27 = await budget.plan()
    await budget.allocate((await budget.line(fy27["id"], "MARTECH"))["id"], "1000.00")
    fy28 = await budget.plan(year=2028)
    await budget.line(fy28["id"], "MARTECH")
    po = {
        "action": "created",
        "po_number": "PO-X",
        "revision": 1,
        "fiscal_year": 2027,
        "budget_line": "MARTECH",
        "period": "2027-03",
        "amount": "10.00",
        "currency": "EUR",
    }
    cid = (await budget.ok("POST", "/v1/erp/purchase-orders", 201, headers=ERP, json=po))["id"]
    before = await budget.ok("GET", f"/v1/commitments/{cid}")
    body = problem(
        await budget.c.post(
            "/v1/erp/purchase-orders",
            headers=ERP,
            json={**po, "action": "changed", "revision": 2, "fiscal_year": 2028, "period": "2028-03"},
        ),
        422,
    )
    assert body["errors"][0]["field"] == "budget_line" and "another plan" in body["detail"]
    assert await budget.ok("GET", f"/v1/commitments/{cid}") == before

    await budget.ok("POST", f"/v1/plans/{fy27['id']}/periods/2027-03/close")
    body = problem(
        await budget.c.post(
            "/v1/erp/purchase-orders", headers=ERP, json={"action": "cancelled", "po_number": "PO-X", "revision": 3}
        ),
        409,
    )
    assert "2027-03" in body["detail"]
    assert (await budget.ok("GET", f"/v1/commitments/{cid}"))["status"] == "committed"
    await _held_matches_open_commitments(budget)
