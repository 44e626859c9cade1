"""An invoice is a fact and never vanishes: one whose line cannot be found (a line code no active plan
has, a purchase order not known yet and no line) waits in the ERP suspense queue and is posted once
when assigned; one whose purchase order is not known but that names its line is posted on it without
a commitment. Only malformed input is a 422."""

from __future__ import annotations

import pytest

from tests.budget.conftest import FINANCE, Budget, problem, who
from tests.budget.test_invariants import check_invariants

pytestmark = pytest.mark.db

ERP = who("partner", subject="webhook:erp")


def invoice(number: str, **fields: str) -> dict:
    return {
        "invoice_number": number,
        "fiscal_year": 2027,
        "period": "2027-03",
        "amount": "400.00",
        "currency": "EUR",
        "vendor": "Acme",
        **fields,
    }


def order(po: str, line: str, amount: str = "1000.00") -> dict:
    return {
        "action": "created",
        "po_number": po,
        "revision": 1,
        "fiscal_year": 2027,
        "budget_line": line,
        "period": "2027-03",
        "amount": amount,
        "currency": "EUR",
    }


async def _setup(budget: Budget) -> tuple[dict, dict]:
    plan = await budget.plan()
    martech = await budget.line(plan["id"], "MARTECH")
    await budget.allocate(martech["id"], "5000.00")
    return plan, martech


async def _waiting(budget: Budget) -> list[dict]:
    return (await budget.ok("GET", "/v1/erp/suspense?status=waiting"))["items"]


async def test_an_invoice_on_an_unknown_line_code_waits_in_suspense_and_is_posted_once_when_assigned(budget):
    _, martech = await _setup(budget)
    doc = invoice("INV-1", budget_line="MARTEHC")  # a typo in the ERP
    held = await budget.ok("POST", "/v1/erp/invoices", 202, headers=ERP, json=doc)
    assert (held["kind"], held["document_ref"], held["status"]) == ("invoice", "INV-1", "waiting")
    assert "no active plan of fiscal year 2027 has a line coded 'MARTEHC'" in held["reason"]
    assert held["amount"] == "400.00" and held["request"]["budget_line"] == "MARTEHC"
    again = await budget.ok("POST", "/v1/erp/invoices", 202, headers=ERP, json=doc)  # the ERP retries
    assert again["id"] == held["id"]
    assert [i["id"] for i in await _waiting(budget)] == [held["id"]]
    assert (await budget.balance(martech["id"]))["spent"] == "0.00"

    nowhere = await budget.c.post(f"/v1/erp/suspense/{held['id']}/assign", headers=FINANCE, json={})
    assert "No mapping rule matches" in problem(nowhere, 409)["detail"]
    done = await budget.ok(
        "POST", f"/v1/erp/suspense/{held['id']}/assign", headers=FINANCE, json={"budget_line": "MARTECH"}
    )
    assert (done["status"], done["line_code"], done["posted_by"]) == ("posted", "MARTECH", "fiona")
    assert (await budget.balance(martech["id"]))["spent"] == "400.00"
    assert await _waiting(budget) == []
    twice = await budget.c.post(f"/v1/erp/suspense/{held['id']}/assign", headers=FINANCE, json={})
    assert "posted already" in problem(twice, 409)["detail"]
    replay = await budget.ok("POST", "/v1/erp/invoices", 200, headers=ERP, json=doc)  # redelivered after posting
    assert replay["replayed"] is True and replay["id"] == done["result_id"]
    assert (await budget.balance(martech["id"]))["spent"] == "400.00"


async def test_a_waiting_invoice_redelivered_once_its_line_exists_is_posted_and_leaves_suspense(budget):
    plan, _ = await _setup(budget)
    doc = invoice("INV-2", budget_line="EVENTS")
    held = await budget.ok("POST", "/v1/erp/invoices", 202, headers=ERP, json=doc)
    events = await budget.line(plan["id"], "EVENTS")
    posted = await budget.ok("POST", "/v1/erp/invoices", 201, headers=ERP, json=doc)
    assert posted["line_id"] == events["id"] and posted["overspend"] is True  # a fact, even unfunded
    item = (await budget.ok("GET", "/v1/erp/suspense?status=posted"))["items"][0]
    assert (item["id"], item["line_code"], item["result_id"]) == (held["id"], "EVENTS", posted["id"])
    assert await _waiting(budget) == []
    late = await budget.c.post(f"/v1/erp/suspense/{held['id']}/assign", headers=FINANCE, json={"budget_line": "EVENTS"})
    assert "posted already" in problem(late, 409)["detail"]
    assert (await budget.balance(events["id"]))["spent"] == "400.00"


async def test_an_invoice_before_its_order_is_posted_on_its_line_without_a_commitment(budget):
    _, martech = await _setup(budget)
    doc = invoice("INV-3", budget_line="MARTECH", po_number="PO-LATE")
    posted = await budget.ok("POST", "/v1/erp/invoices", 202, headers=ERP, json=doc)
    assert posted["unknown_po"] == "PO-LATE" and posted["commitment_id"] is None
    assert (posted["kind"], posted["line_id"], posted["amount"]) == ("actual", martech["id"], "400.00")
    bal = await budget.balance(martech["id"])
    assert (bal["spent"], bal["committed"]) == ("400.00", "0.00")
    replay = await budget.ok("POST", "/v1/erp/invoices", 200, headers=ERP, json=doc)
    assert replay["replayed"] is True and replay["id"] == posted["id"]
    assert (await budget.balance(martech["id"]))["spent"] == "400.00"
    assert (await budget.ok("GET", "/v1/erp/suspense"))["items"] == []


async def test_an_invoice_naming_only_its_order_pays_on_the_orders_line(budget):
    _, martech = await _setup(budget)
    c = await budget.ok("POST", "/v1/erp/purchase-orders", 201, headers=ERP, json=order("PO-1", "MARTECH"))
    posted = await budget.ok("POST", "/v1/erp/invoices", 201, headers=ERP, json=invoice("INV-4", po_number="PO-1"))
    assert posted["line_id"] == martech["id"] and posted["commitment_id"] == c["id"] and posted["consumed"] == "400.00"
    bal = await budget.balance(martech["id"])
    assert (bal["spent"], bal["committed"]) == ("400.00", "600.00")


async def test_an_invoice_with_an_unknown_order_and_no_line_waits_until_the_order_arrives(budget):
    _, martech = await _setup(budget)
    doc = invoice("INV-5", po_number="PO-2")
    held = await budget.ok("POST", "/v1/erp/invoices", 202, headers=ERP, json=doc)
    assert held["status"] == "waiting" and "purchase order 'PO-2' is not known" in held["reason"]
    still = await budget.c.post(f"/v1/erp/suspense/{held['id']}/assign", headers=FINANCE, json={})
    assert "Purchase order 'PO-2' is not known" in problem(still, 409)["detail"]
    assert (await budget.balance(martech["id"]))["spent"] == "0.00"

    c = await budget.ok("POST", "/v1/erp/purchase-orders", 201, headers=ERP, json=order("PO-2", "MARTECH"))
    done = await budget.ok("POST", f"/v1/erp/suspense/{held['id']}/assign", headers=FINANCE, json={})
    assert (done["status"], done["line_code"]) == ("posted", "MARTECH")
    actual = await budget.ok("POST", "/v1/erp/invoices", 200, headers=ERP, json=doc)
    assert actual["id"] == done["result_id"] and actual["commitment_id"] == c["id"]
    bal = await budget.balance(martech["id"])
    assert (bal["spent"], bal["committed"]) == ("400.00", "600.00")


async def test_a_waiting_invoice_with_an_unknown_order_may_be_assigned_a_line_by_hand(budget):
    _, martech = await _setup(budget)
    held = await budget.ok("POST", "/v1/erp/invoices", 202, headers=ERP, json=invoice("INV-6", po_number="PO-3"))
    done = await budget.ok(
        "POST", f"/v1/erp/suspense/{held['id']}/assign", headers=FINANCE, json={"budget_line": "MARTECH"}
    )
    assert done["status"] == "posted"
    bal = await budget.balance(martech["id"])
    assert (bal["spent"], bal["committed"]) == ("400.00", "0.00")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "12.345"}, "amount"),
        ({"amount": 12.5}, "amount"),
        ({"currency": "eur"}, "currency"),
        ({"currency": "XXQ"}, "currency"),
        ({"invoice_number": None}, "invoice_number"),
        ({"period": None}, "period"),
        ({"fiscal_year": None}, "fiscal_year"),
        ({"budget_line": None, "po_number": None, "vendor": None}, "budget_line"),  # nothing names its line
    ],
)
async def test_only_a_malformed_invoice_is_a_422_and_nothing_is_kept(budget, change, field):
    _, martech = await _setup(budget)
    body = {
        k: v for k, v in {**invoice("INV-7", budget_line="NOPE", po_number="PO-9"), **change}.items() if v is not None
    }
    r = await budget.c.post("/v1/erp/invoices", headers=ERP, json=body)
    assert field in {e["field"] for e in problem(r, 422)["errors"]}
    assert (await budget.ok("GET", "/v1/erp/suspense"))["items"] == []
    assert (await budget.balance(martech["id"]))["spent"] == "0.00"


async def test_an_order_arriving_after_its_invoices_is_consumed_by_them_once(budget):
    plan, martech = await _setup(budget)
    for number in ("INV-8", "INV-9"):  # 400.00 each, before their order
        doc = invoice(number, budget_line="MARTECH", po_number="PO-AFTER")
        assert (await budget.ok("POST", "/v1/erp/invoices", 202, headers=ERP, json=doc))["unknown_po"] == "PO-AFTER"
    c = await budget.ok("POST", "/v1/erp/purchase-orders", 201, headers=ERP, json=order("PO-AFTER", "MARTECH"))
    assert (c["status"], c["amount"]) == ("committed", "1000.00")
    bal = await budget.balance(martech["id"])
    assert (bal["spent"], bal["committed"], bal["available"]) == ("800.00", "200.00", "4000.00")  # not 1000 + 800
    again = await budget.ok("POST", "/v1/erp/purchase-orders", 200, headers=ERP, json=order("PO-AFTER", "MARTECH"))
    assert again["id"] == c["id"]
    later = invoice("INV-10", po_number="PO-AFTER")  # the next invoice consumes what is left, and no more
    posted = await budget.ok("POST", "/v1/erp/invoices", 201, headers=ERP, json=later)
    assert (posted["commitment_id"], posted["consumed"], posted["commitment_status"]) == (c["id"], "200.00", "closed")
    bal = await budget.balance(martech["id"])
    assert (bal["spent"], bal["committed"], bal["available"]) == ("1200.00", "0.00", "3800.00")
    await check_invariants(budget.runtime, plan["id"], "block")  # the ledger equals its entries and commitments


async def test_an_order_smaller_than_its_earlier_invoice_is_consumed_in_full_and_closed(budget):
    plan, martech = await _setup(budget)
    doc = invoice("INV-11", budget_line="MARTECH", po_number="PO-SMALL")
    await budget.ok("POST", "/v1/erp/invoices", 202, headers=ERP, json=doc)
    c = await budget.ok(
        "POST", "/v1/erp/purchase-orders", 201, headers=ERP, json=order("PO-SMALL", "MARTECH", "300.00")
    )
    assert c["status"] == "closed"
    bal = await budget.balance(martech["id"])
    assert (bal["spent"], bal["committed"], bal["available"]) == ("400.00", "0.00", "4600.00")
    await check_invariants(budget.runtime, plan["id"], "block")
