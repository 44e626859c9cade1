"""ERP mapping: rules from ERP coordinates to budget lines (priority ordered, tried with /test), the
purchase orders and invoices that name coordinates instead of a line code, and the suspense queue of
documents no rule matches, each posted once when assigned."""

from __future__ import annotations

import asyncio

import pytest

from tests.budget.conftest import FINANCE, Budget, problem, who

pytestmark = pytest.mark.db

ERP = who("partner", subject="webhook:erp")
EMEA = who("finance", scopes=("region:EMEA",), subject="emma")
MARKETER = who("marketer", subject="mark")


def invoice(number: str = "INV-1", **coordinates: str) -> dict:
    return {
        "invoice_number": number,
        "fiscal_year": 2027,
        "period": "2027-03",
        "amount": "400.00",
        "currency": "EUR",
        **coordinates,
    }


async def _setup(budget: Budget) -> tuple[dict, dict]:
    plan = await budget.plan()
    martech = await budget.line(plan["id"], "MARTECH", channel="martech")
    events = await budget.line(plan["id"], "EVENTS", channel="events")
    for ln in (martech, events):
        await budget.allocate(ln["id"], "1000.00")
    return martech, events


async def _rule(budget: Budget, priority: int, line_code: str, **conditions: str) -> dict:
    return await budget.ok(
        "POST", "/v1/erp/mapping", 201, json={"priority": priority, "line_code": line_code, **conditions}
    )


async def test_rules_are_tried_by_priority_and_the_test_says_which_line_and_why(budget):
    martech, _ = await _setup(budget)
    broad = await _rule(budget, 20, "EVENTS", company_code="DE01")
    narrow = await _rule(budget, 10, "MARTECH", cost_center="CC-4100", gl_account="612*")
    listed = (await budget.ok("GET", "/v1/erp/mapping"))["items"]
    assert [r["id"] for r in listed] == [narrow["id"], broad["id"]]

    hit = await budget.ok(
        "POST",
        "/v1/erp/mapping/test",
        json={"fiscal_year": 2027, "company_code": "DE01", "cost_center": "CC-4100", "gl_account": "612000"},
    )
    assert hit["matched"] is True and hit["line_code"] == "MARTECH" and hit["rule"]["id"] == narrow["id"]
    assert hit["line"]["id"] == martech["id"] and "priority 10" in hit["reason"]
    assert [c["matched"] for c in hit["checked"]] == [True]

    fallthrough = await budget.ok(
        "POST", "/v1/erp/mapping/test", json={"company_code": "DE01", "cost_center": "CC-4100", "gl_account": "700100"}
    )
    assert fallthrough["line_code"] == "EVENTS" and fallthrough["line"] is None  # no fiscal year: no line
    assert fallthrough["checked"][0] == {
        "rule_id": narrow["id"],
        "priority": 10,
        "matched": False,
        "why": "gl_account '700100' does not match '612*'",
    }
    miss = await budget.ok("POST", "/v1/erp/mapping/test", json={"company_code": "FR01"})
    assert (
        miss["matched"] is False
        and miss["rule"] is None
        and "no mapping rule matches company_code=FR01" in miss["reason"]
    )

    assert (await budget.ok("DELETE", f"/v1/erp/mapping/{broad['id']}", headers=FINANCE))["id"] == broad["id"]
    assert (await budget.ok("POST", "/v1/erp/mapping/test", json={"company_code": "DE01"}))["matched"] is False
    assert problem(await budget.c.delete(f"/v1/erp/mapping/{broad['id']}", headers=FINANCE), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"priority": 1, "line_code": "MARTECH"}, "cost_center"),
        ({"priority": -1, "line_code": "MARTECH", "vendor": "Acme"}, "priority"),
        ({"priority": 1, "line_code": "has space", "vendor": "Acme"}, "line_code"),
        ({"priority": 1, "line_code": "MARTECH", "cost_center": ""}, "cost_center"),
        ({"priority": 1, "line_code": "MARTECH", "gl_account": "6" * 201}, "gl_account"),
    ],
)
async def test_a_bad_rule_is_a_422_naming_the_field_and_nothing_is_kept(budget, body, field):
    r = await budget.c.post("/v1/erp/mapping", headers=FINANCE, json=body)
    assert field in {e["field"] for e in problem(r, 422)["errors"]}
    assert (await budget.ok("GET", "/v1/erp/mapping"))["items"] == []


async def test_only_unscoped_planners_change_the_mapping(budget):
    body = {"priority": 1, "line_code": "MARTECH", "vendor": "Acme"}
    assert (await budget.c.post("/v1/erp/mapping", headers=EMEA, json=body)).status_code == 403
    assert (await budget.c.post("/v1/erp/mapping", headers=MARKETER, json=body)).status_code == 403
    assert (await budget.c.post("/v1/erp/mapping", headers=ERP, json=body)).status_code == 403
    assert (await budget.c.get("/v1/erp/suspense", headers=MARKETER)).status_code == 403


async def test_orders_and_invoices_with_coordinates_post_to_the_mapped_line(budget):
    martech, events = await _setup(budget)
    await _rule(budget, 10, "MARTECH", cost_center="CC-4100")
    await _rule(budget, 20, "EVENTS", internal_order="IO-SPRING")
    po = {
        "action": "created",
        "po_number": "PO-1",
        "revision": 1,
        "fiscal_year": 2027,
        "period": "2027-03",
        "amount": "300.00",
        "currency": "EUR",
        "internal_order": "IO-SPRING",
    }
    c = await budget.ok("POST", "/v1/erp/purchase-orders", 201, headers=ERP, json=po)
    assert c["line_id"] == events["id"] and c["status"] == "committed"
    moved = {**po, "action": "changed", "revision": 2, "cost_center": "CC-4100"}  # the higher rule wins now
    assert (await budget.ok("POST", "/v1/erp/purchase-orders", headers=ERP, json=moved))["line_id"] == martech["id"]
    inv = await budget.ok(
        "POST", "/v1/erp/invoices", 201, headers=ERP, json={**invoice(cost_center="CC-4100"), "po_number": "PO-1"}
    )
    assert inv["line_id"] == martech["id"] and inv["commitment_id"] == c["id"]
    assert (await budget.balance(martech["id"]))["spent"] == "400.00"
    assert (await budget.ok("GET", "/v1/erp/suspense"))["items"] == []


async def test_an_unmatched_invoice_waits_in_suspense_and_is_posted_once_when_assigned(budget):
    martech, _ = await _setup(budget)
    doc = invoice("INV-9", company_code="DE01", cost_center="CC-9999")
    held = await budget.ok("POST", "/v1/erp/invoices", 202, headers=ERP, json=doc)
    assert (held["kind"], held["document_ref"], held["status"]) == ("invoice", "INV-9", "waiting")
    assert held["coordinates"]["cost_center"] == "CC-9999" and "no mapping rule matches" in held["reason"]
    again = await budget.ok("POST", "/v1/erp/invoices", 202, headers=ERP, json=doc)  # the ERP retries
    assert again["id"] == held["id"]
    assert [i["id"] for i in (await budget.ok("GET", "/v1/erp/suspense?status=waiting"))["items"]] == [held["id"]]
    assert (await budget.balance(martech["id"]))["spent"] == "0.00"

    nowhere = await budget.c.post(f"/v1/erp/suspense/{held['id']}/assign", headers=FINANCE, json={})
    assert "No mapping rule matches company_code=DE01" in problem(nowhere, 409)["detail"]
    unknown = await budget.c.post(
        f"/v1/erp/suspense/{held['id']}/assign", headers=FINANCE, json={"budget_line": "NOPE"}
    )
    assert problem(unknown, 422)["errors"][0]["field"] == "budget_line"
    done = await budget.ok(
        "POST", f"/v1/erp/suspense/{held['id']}/assign", headers=FINANCE, json={"budget_line": "MARTECH"}
    )
    assert (done["status"], done["line_code"], done["posted_by"]) == ("posted", "MARTECH", "fiona")
    assert (await budget.balance(martech["id"]))["spent"] == "400.00"
    twice = await budget.c.post(f"/v1/erp/suspense/{held['id']}/assign", headers=FINANCE, json={})
    assert "posted already" in problem(twice, 409)["detail"]
    replay = await budget.ok("POST", "/v1/erp/invoices", 200, headers=ERP, json=doc)  # redelivered after posting
    assert replay["replayed"] is True and replay["id"] == done["result_id"]
    assert (await budget.balance(martech["id"]))["spent"] == "400.00"
    assert (await budget.ok("GET", "/v1/erp/suspense?status=waiting"))["items"] == []


async def test_a_rule_added_later_maps_a_waiting_order_when_it_is_assigned(budget):
    _, events = await _setup(budget)
    po = {
        "action": "created",
        "po_number": "PO-7",
        "revision": 1,
        "fiscal_year": 2027,
        "period": "2027-03",
        "amount": "250.00",
        "currency": "EUR",
        "gl_account": "640100",
    }
    held = await budget.ok("POST", "/v1/erp/purchase-orders", 202, headers=ERP, json=po)
    assert held["kind"] == "purchase_order" and held["amount"] == "250.00"
    await _rule(budget, 5, "EVENTS", gl_account="64*")
    done = await budget.ok("POST", f"/v1/erp/suspense/{held['id']}/assign", headers=FINANCE, json={})
    assert done["line_code"] == "EVENTS"
    c = await budget.ok("GET", f"/v1/commitments/{done['result_id']}")
    assert (c["line_id"], c["amount"], c["external_ref"]) == (events["id"], "250.00", "PO-7")


async def test_an_invoice_with_neither_a_line_nor_coordinates_is_a_422(budget):
    await _setup(budget)
    r = await budget.c.post("/v1/erp/invoices", headers=ERP, json=invoice())
    assert problem(r, 422)["errors"][0]["field"] == "budget_line"
    assert (await budget.ok("GET", "/v1/erp/suspense"))["items"] == []


async def test_the_same_unmatched_document_at_once_and_two_assignments_at_once_post_it_once(budget):
    martech, _ = await _setup(budget)
    doc = invoice("INV-42", cost_center="CC-0")
    first, second = await asyncio.gather(*(budget.c.post("/v1/erp/invoices", headers=ERP, json=doc) for _ in range(2)))
    assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
    assert first.json()["id"] == second.json()["id"]
    url = f"/v1/erp/suspense/{first.json()['id']}/assign"
    a, b = await asyncio.gather(
        *(budget.c.post(url, headers=FINANCE, json={"budget_line": "MARTECH"}) for _ in range(2))
    )
    assert sorted([a.status_code, b.status_code]) == [200, 409], (a.text, b.text)
    assert (await budget.balance(martech["id"]))["spent"] == "400.00"


async def test_a_campaign_code_maps_documents_and_the_test_names_it(budget):
    martech, events = await _setup(budget)
    rule = await _rule(budget, 10, "EVENTS", campaign_code="SPRING-27")
    assert rule["campaign_code"] == "SPRING-27" and rule["version"] == 1
    hit = await budget.ok("POST", "/v1/erp/mapping/test", json={"fiscal_year": 2027, "campaign_code": "SPRING-27"})
    assert hit["matched"] is True and hit["line"]["id"] == events["id"] and "campaign_code=SPRING-27" in hit["reason"]
    miss = await budget.ok("POST", "/v1/erp/mapping/test", json={"campaign_code": "AUTUMN-27"})
    assert miss["checked"][0]["why"] == "campaign_code 'AUTUMN-27' does not match 'SPRING-27'"
    posted = await budget.ok("POST", "/v1/erp/invoices", 201, headers=ERP, json=invoice(campaign_code="SPRING-27"))
    assert posted["line_id"] == events["id"]
    held = await budget.ok("POST", "/v1/erp/invoices", 202, headers=ERP, json=invoice("INV-2", campaign_code="X"))
    assert held["coordinates"]["campaign_code"] == "X"
    assert (await budget.balance(martech["id"]))["spent"] == "0.00"


async def test_a_rule_is_edited_with_if_match_and_a_stale_or_missing_version_changes_nothing(budget):
    martech, events = await _setup(budget)
    rule = await _rule(budget, 10, "MARTECH", cost_center="CC-4100")
    url = f"/v1/erp/mapping/{rule['id']}"
    r = await budget.c.get(url, headers=FINANCE)
    assert r.status_code == 200 and r.headers["etag"] == '"1"' and r.json() == rule
    body = {"priority": 5, "line_code": "EVENTS", "campaign_code": "SPRING-27", "description": "events now"}
    assert problem(await budget.c.put(url, headers=FINANCE, json=body), 428)
    bad = await budget.c.put(url, headers={**FINANCE, "If-Match": "one"}, json=body)
    assert problem(bad, 422)["errors"][0]["field"] == "header.If-Match"
    changed = await budget.c.put(url, headers={**FINANCE, "If-Match": '"1"'}, json=body)
    assert changed.status_code == 200 and changed.headers["etag"] == '"2"', changed.text
    got = changed.json()
    assert (got["priority"], got["line_code"], got["campaign_code"], got["cost_center"]) == (
        5,
        "EVENTS",
        "SPRING-27",
        None,  # a PUT replaces the rule: a condition left out is gone
    )
    assert (got["version"], got["updated_by"], got["created_by"]) == (2, "fiona", rule["created_by"])
    stale = await budget.c.put(url, headers={**FINANCE, "If-Match": '"1"'}, json={**body, "priority": 7})
    assert problem(stale, 412)["current_version"] == 2
    assert (await budget.ok("GET", url))["priority"] == 5
    assert problem(await budget.c.put("/v1/erp/mapping/nope", headers={**FINANCE, "If-Match": '"1"'}, json=body), 404)
    audit = (await budget.ok("GET", "/v1/audit?limit=100"))["items"]
    assert "budget.erp_mapping.changed" in {a["action"] for a in audit}

    # The edited rule is what routes documents from now on: the campaign code, not the cost centre.
    moved = await budget.ok("POST", "/v1/erp/invoices", 201, headers=ERP, json=invoice(campaign_code="SPRING-27"))
    assert moved["line_id"] == events["id"]
    held = await budget.ok("POST", "/v1/erp/invoices", 202, headers=ERP, json=invoice("INV-2", cost_center="CC-4100"))
    assert held["status"] == "waiting"
    assert (await budget.balance(martech["id"]))["spent"] == "0.00"


async def test_editing_a_rule_is_for_unscoped_planners_and_a_bad_rule_changes_nothing(budget):
    rule = await _rule(budget, 10, "MARTECH", vendor="Acme")
    url = f"/v1/erp/mapping/{rule['id']}"
    body = {"priority": 1, "line_code": "EVENTS", "vendor": "Acme"}
    for headers in (EMEA, MARKETER, ERP):
        assert (await budget.c.put(url, headers={**headers, "If-Match": '"1"'}, json=body)).status_code == 403
    for bad, field in (
        ({"priority": 1, "line_code": "EVENTS"}, "cost_center"),  # no condition left
        ({**body, "campaign_code": ""}, "campaign_code"),
        ({**body, "line_code": "has space"}, "line_code"),
    ):
        r = await budget.c.put(url, headers={**FINANCE, "If-Match": '"1"'}, json=bad)
        assert field in {e["field"] for e in problem(r, 422)["errors"]}
    assert await budget.ok("GET", url) == rule
