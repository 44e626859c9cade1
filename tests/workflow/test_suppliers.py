"""Suppliers: organisations with contacts and their own calendar; their principals (role
`supplier`, scope `supplier:<id>`) see and act on their own deliverables only, and a supplier's
deliverable is due on its calendar (a holiday refused, a DST change honoured)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.workflow.conftest import ANALYST, MARKETER, MOPS, who
from tests.workflow.test_deliverables import a_request, at, berlin

pytestmark = pytest.mark.db


def supplier(supplier_id: str, name: str = "agency") -> object:
    return who(f"{name}-key", "supplier", scopes=(f"supplier:{supplier_id}",))


async def two_suppliers(wf) -> tuple[dict, dict]:
    await berlin(wf)
    acme = await wf.ok(
        "POST",
        "/v1/suppliers",
        MOPS,
        {"name": "Acme Studio", "calendar": "berlin", "contacts": [{"name": "Ann", "email": "ann@acme.example"}]},
        status=201,
    )
    other = await wf.ok("POST", "/v1/suppliers", MOPS, {"name": "Other Print"}, status=201)
    return acme, other


async def test_suppliers_are_registered_by_mops_and_read_by_their_own(wf):
    acme, other = await two_suppliers(wf)
    assert acme["calendar"] == "berlin" and acme["contacts"][0]["email"] == "ann@acme.example"
    assert other["calendar"] == "default"
    assert (await wf.call("POST", "/v1/suppliers", MARKETER, {"name": "x"})).status_code == 403
    r = await wf.call("POST", "/v1/suppliers", MOPS, {"name": "Acme Studio"})
    assert r.status_code == 409, r.text
    for body, field in (
        ({"name": "y", "calendar": "nowhere"}, "calendar"),
        ({"name": "y", "contacts": [{"name": "a", "email": "not-an-email"}]}, "contacts.0.email"),
    ):
        r = await wf.call("POST", "/v1/suppliers", MOPS, body)
        assert r.status_code == 422 and field in {e["field"] for e in r.json()["errors"]}, r.text
    assert [s["name"] for s in (await wf.ok("GET", "/v1/suppliers", ANALYST))["items"]] == [
        "Acme Studio",
        "Other Print",
    ]
    mine = await wf.ok("GET", "/v1/suppliers", supplier(acme["id"]))
    assert [s["id"] for s in mine["items"]] == [acme["id"]]
    assert (await wf.call("GET", f"/v1/suppliers/{other['id']}", supplier(acme["id"]))).status_code == 404
    assert (await wf.ok("GET", f"/v1/suppliers/{acme['id']}", supplier(acme["id"])))["name"] == "Acme Studio"


async def test_a_suppliers_deliverable_is_due_on_its_calendar_across_dst_and_a_holiday(wf):
    acme, _ = await two_suppliers(wf)
    req = await a_request(wf)
    path = f"/v1/requests/{req['id']}/deliverables"
    summer = await wf.ok(
        "POST", path, MARKETER, {"name": "Print", "supplier_id": acme["id"], "due_date": "2027-10-29"}, status=201
    )
    assert summer["sla_kind"] == "underpinning_contract" and summer["calendar"] == "berlin"
    assert at(summer["due_at"]) == dt.datetime(2027, 10, 29, 15, tzinfo=dt.UTC)  # 17:00 CEST
    winter = await wf.ok(
        "POST", path, MARKETER, {"name": "Post", "supplier_id": acme["id"], "due_date": "2027-11-01"}, status=201
    )
    assert at(winter["due_at"]) == dt.datetime(2027, 11, 1, 16, tzinfo=dt.UTC)  # 17:00 CET
    r = await wf.call("POST", path, MARKETER, {"name": "Xmas", "supplier_id": acme["id"], "due_date": "2027-12-24"})
    assert r.status_code == 201, r.text  # Christmas Eve is a working day in DE ...
    r = await wf.call("POST", path, MARKETER, {"name": "Xmas", "supplier_id": acme["id"], "due_date": "2027-12-27"})
    assert r.status_code == 201, r.text
    r = await wf.call("POST", path, MARKETER, {"name": "Xmas", "supplier_id": acme["id"], "due_date": "2027-12-26"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "due_date", r.text  # ... the 26th is not
    hours = await wf.ok(
        "POST", path, MARKETER, {"name": "Copy", "supplier_id": acme["id"], "business_hours": "16"}, status=201
    )
    assert hours["calendar"] == "berlin" and at(hours["due_at"]) - at(hours["created_at"]) >= dt.timedelta(hours=16)


async def test_a_supplier_acts_only_on_its_own_work_and_cannot_guess_another_ones(wf):
    acme, other = await two_suppliers(wf)
    req = await a_request(wf)
    path = f"/v1/requests/{req['id']}/deliverables"
    mine = await wf.ok(
        "POST", path, MARKETER, {"name": "A", "supplier_id": acme["id"], "business_hours": "8"}, status=201
    )
    theirs = await wf.ok(
        "POST", path, MARKETER, {"name": "B", "supplier_id": other["id"], "business_hours": "8"}, status=201
    )
    acme_key = supplier(acme["id"])
    listed = await wf.ok("GET", "/v1/deliverables", acme_key, params={"assignee": "me"})
    assert [d["id"] for d in listed["items"]] == [mine["id"]]
    # Another supplier's deliverable does not exist for acme: read, act, ask all 404, nothing written.
    assert (await wf.call("GET", f"/v1/deliverables/{theirs['id']}", acme_key)).status_code == 404
    for action in ("accept", "start", "deliver", "questions"):
        body = {"body": "?"} if action == "questions" else {}
        r = await wf.call("POST", f"/v1/deliverables/{theirs['id']}/{action}", acme_key, body)
        assert r.status_code == 404, (action, r.text)
    assert (await wf.ok("GET", f"/v1/deliverables/{theirs['id']}", MARKETER))["status"] == "open"
    # Nor the request, nor anything else of the workflow, nor a scope-less supplier anything at all.
    assert (await wf.call("GET", f"/v1/requests/{req['id']}", acme_key)).status_code == 403
    assert (await wf.call("GET", path, acme_key)).status_code == 404  # visible to the request's readers only
    for path_ in ("/v1/requests", "/v1/tasks", "/v1/instances", "/v1/calendars", "/v1/definitions", "/v1/reports/sla"):
        assert (await wf.call("GET", path_, acme_key)).status_code == 403, path_
    assert (await wf.call("POST", "/v1/instances", acme_key, {})).status_code == 403
    assert (await wf.call("POST", f"/v1/requests/{req['id']}/comments", acme_key, {"body": "hi"})).status_code == 403
    bare = who("nokey", "supplier")
    assert (await wf.ok("GET", "/v1/deliverables", bare))["items"] == []
    assert (await wf.call("GET", f"/v1/deliverables/{mine['id']}", bare)).status_code == 404
    # Its own work: accept, ask, start, deliver a link; the review is the requester's.
    assert (await wf.ok("POST", f"/v1/deliverables/{mine['id']}/accept", acme_key, {}))["status"] == "accepted"
    q = await wf.ok("POST", f"/v1/deliverables/{mine['id']}/questions", acme_key, {"body": "CMYK or RGB?"}, status=201)
    assert q["deliverable_id"] == mine["id"] and q["mentions"] == [MARKETER.subject]
    await wf.ok("POST", f"/v1/deliverables/{mine['id']}/start", acme_key, {})
    link = "https://files.acme.example/a.pdf"
    delivered = await wf.ok("POST", f"/v1/deliverables/{mine['id']}/deliver", acme_key, {"link": link})
    assert delivered["link"] == link and delivered["sla_state"] == "paused"
    for action in ("review", "approve", "cancel"):
        assert (await wf.call("POST", f"/v1/deliverables/{mine['id']}/{action}", acme_key, {})).status_code == 403
    r = await wf.call("POST", f"/v1/deliverables/{mine['id']}/send-back", acme_key, {"reason": "x"})
    assert r.status_code == 403
    assert (await wf.call("POST", f"/v1/deliverables/{mine['id']}/accept", MARKETER, {})).status_code == 409
    assert (await wf.ok("POST", f"/v1/deliverables/{mine['id']}/approve", MARKETER, {}))["status"] == "done"
    r = await wf.call("POST", f"/v1/deliverables/{mine['id']}/deliver", acme_key, {"link": "javascript:alert(1)"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "link", r.text
