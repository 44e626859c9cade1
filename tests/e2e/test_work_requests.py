"""A work request end to end through the gateway, between real processes: request -> approval ->
deliverables (a supplier's, a team's) -> delivery -> review (sent back once) -> the supplier report;
the supplier's key reaches its own work only, and no budget route at all."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tests.e2e.conftest import Cluster

pytestmark = pytest.mark.e2e


def test_request_approval_deliverables_delivery_review_and_report(cluster: Cluster):
    mops = cluster.client("mona", "mops")
    marketer = cluster.client("maria", "marketer", scopes=("region:EMEA",))
    name = f"Acme {uuid.uuid4().hex[:6]}"
    r = mops.post(
        "/workflow/v1/suppliers", json={"name": name, "contacts": [{"name": "Al", "email": "al@acme.example"}]}
    )
    assert r.status_code == 201, r.text
    supplier_id = r.json()["id"]
    acme = cluster.client("acme-portal", "supplier", scopes=(f"supplier:{supplier_id}",))
    data = {"region": "EMEA", "asset_type": "banner", "description": "Spring hero banner", "due_date": "2031-02-14"}
    r = marketer.post("/workflow/v1/requests", json={"type_key": "creative-request", "title": "Hero", "data": data})
    assert r.status_code == 201, r.text
    req = r.json()
    task = req["instance"]["tasks"][0]
    assert mops.post(f"/workflow/v1/tasks/{task['id']}/approve", json={}).status_code == 200
    assert marketer.get(f"/workflow/v1/requests/{req['number']}").json()["status"] == "approved"

    path = f"/workflow/v1/requests/{req['id']}/deliverables"
    r = marketer.post(path, json={"name": "Print files", "supplier_id": supplier_id, "business_hours": "16"})
    assert r.status_code == 201, r.text
    work = r.json()
    assert work["sla_kind"] == "underpinning_contract"
    r = marketer.post(path, json={"name": "Copy", "owner": "olga", "team": "content", "business_hours": "8"})
    internal = r.json()

    # The supplier: its own work only; another deliverable is not found, budget is refused at the gateway.
    mine = acme.get("/workflow/v1/deliverables", params={"assignee": "me"}).json()["items"]
    assert [d["id"] for d in mine] == [work["id"]]
    assert acme.get(f"/workflow/v1/deliverables/{internal['id']}").status_code == 404
    assert acme.get(f"/workflow/v1/requests/{req['id']}").status_code == 403
    for method, url in (("GET", "/budget/v1/plans"), ("GET", "/budget/v1/lines"), ("POST", "/budget/v1/commitments")):
        assert acme.request(method, url, json={} if method == "POST" else None).status_code == 403, url
    base = f"/workflow/v1/deliverables/{work['id']}"
    assert acme.post(f"{base}/accept", json={}).json()["status"] == "accepted"
    assert acme.post(f"{base}/questions", json={"body": "Bleed 3 mm?"}).status_code == 201
    assert acme.post(f"{base}/start", json={}).status_code == 200
    r = acme.post(f"{base}/deliver", json={"link": "https://files.acme.example/v1.pdf"})
    assert r.json()["sla_state"] == "paused", r.text
    assert acme.post(f"{base}/approve", json={}).status_code == 403  # the gateway: not the supplier's part

    # The review: sent back once, delivered again, approved.
    r = marketer.post(f"{base}/send-back", json={"reason": "Logo too small"})
    assert r.json()["rework_rounds"] == 1 and r.json()["status"] == "in_progress", r.text
    assert acme.post(f"{base}/deliver", json={"link": "https://files.acme.example/v2.pdf"}).status_code == 200
    assert acme.post(f"{base}/review", json={}).status_code == 403  # the gateway: the requester's part
    r = marketer.post(f"{base}/review", json={})
    assert r.json()["status"] == "in_review" and r.json()["sla_state"] == "paused", r.text
    done = marketer.post(f"{base}/approve", json={}).json()
    assert done["status"] == "done" and done["sla_state"] == "met"

    page = marketer.get(f"/workflow/v1/requests/{req['number']}").json()
    assert {d["name"] for d in page["deliverables"]} == {"Print files", "Copy"}
    assert page["comments"][0]["mentions"] == ["maria"]
    actions = [h["action"] for h in page["history"]]
    assert actions.count("deliverable_delivered") == 2 and "deliverable_sent_back" in actions
    assert "deliverable_review_started" in actions

    today = dt.datetime.now(dt.UTC).date()
    window = {"from": today.isoformat(), "to": (today + dt.timedelta(days=1)).isoformat()}
    rows = [
        r for r in marketer.get("/workflow/v1/reports/suppliers", params=window).json()["rows"] if r["name"] == name
    ]
    assert len(rows) == 1, rows
    assert (rows[0]["completed"], rows[0]["on_time"], rows[0]["rework_rounds"]) == (1, 1, 1)
    assert rows[0]["on_time_rate_pct"] == "100.00" and rows[0]["avg_lateness_business_hours"] == "0.00"
    assert acme.get("/workflow/v1/reports/suppliers", params=window).status_code == 403
