"""The cross-service flows of DESIGN.md, through the gateway, between real processes and a real NATS."""

from __future__ import annotations

import csv
import datetime as dt
import importlib
import io
import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from gateway.settings import SERVICE_NAMES
from tests.e2e.conftest import Cluster, wait_for

pytestmark = pytest.mark.e2e


def setup_plan(admin, year: int, lines: list[dict], allocations: dict[str, str], period: str) -> dict[str, str]:
    """An active plan with lines and allocations; returns code -> line id."""
    plan = admin.post(
        "/budget/v1/plans",
        json={
            "name": f"FY{year} e2e {uuid.uuid4().hex[:6]}",
            "fiscal_year": year,
            "currency": "EUR",
            "overspend_policy": "block",
            "approval_threshold": "10000.00",
        },
    )
    assert plan.status_code == 201, plan.text
    plan_id = plan.json()["id"]
    ids: dict[str, str] = {}
    for line in lines:
        r = admin.post(f"/budget/v1/plans/{plan_id}/lines", json=line)
        assert r.status_code == 201, r.text
        ids[line["code"]] = r.json()["id"]
    r = admin.post(f"/budget/v1/plans/{plan_id}/activate")
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    for code, amount in allocations.items():
        r = admin.post(
            "/budget/v1/allocations", json={"line_id": ids[code], "period": period, "amount": amount, "currency": "EUR"}
        )
        assert r.status_code == 201, r.text
    ids["_plan"] = plan_id
    return ids


def balance(client, line_id: str, period: str) -> dict:
    r = client.get(f"/budget/v1/lines/{line_id}/balance", params={"from": period, "to": period})
    assert r.status_code == 200, r.text
    return r.json()


def task_for(client, commitment_id: str) -> dict | None:
    r = client.get("/workflow/v1/tasks", params={"assignee": "me"})
    assert r.status_code == 200, r.text
    for task in r.json()["items"]:
        inst = client.get(f"/workflow/v1/instances/{task['instance_id']}").json()
        if inst["subject"]["id"] == commitment_id and task["status"] in ("open", "pending", "assigned"):
            return task
    return None


def series_total(client, metric: str, start: str, end: str, **params) -> Decimal | None:
    r = client.get(f"/kpi/v1/metrics/{metric}/series", params={"from": start, "to": end, "grain": "month", **params})
    assert r.status_code == 200, r.text
    values = [p["value"] for s in r.json()["series"] for p in s["points"] if p["value"] is not None]
    return sum((Decimal(v) for v in values), Decimal(0)) if values else None


def test_spend_over_the_threshold_needs_approval_and_rejection_releases_the_hold(cluster: Cluster):
    admin = cluster.client("ada", "admin")
    ids = setup_plan(
        admin,
        2031,
        [
            {"code": "EMEA", "name": "EMEA", "dimensions": {"region": "EMEA"}},
            {
                "code": "EMEA-EVENTS",
                "name": "EMEA events",
                "parent_code": "EMEA",
                "dimensions": {"region": "EMEA", "channel": "events"},
            },
        ],
        {"EMEA-EVENTS": "50000.00"},
        "2031-03",
    )
    line = ids["EMEA-EVENTS"]
    marketer = cluster.client("maria", "marketer", scopes=("region:EMEA",))
    approver = cluster.client("erik", "approver", scopes=("region:EMEA",))
    other_region = cluster.client("akira", "approver", scopes=("region:APAC",))

    r = marketer.post(
        "/budget/v1/commitments",
        json={
            "line_id": line,
            "period": "2031-03",
            "amount": "25000.00",
            "currency": "EUR",
            "external_ref": "PO-E2E-1",
            "memo": "Trade fair booth",
        },
    )
    assert r.status_code == 201, r.text
    commitment = r.json()
    assert commitment["status"] == "pending_approval"
    held = balance(marketer, line, "2031-03")
    assert (held["pending"], held["available"]) == ("25000.00", "25000.00")

    task = wait_for(lambda: task_for(approver, commitment["id"]), what="approval task in erik's inbox")
    assert task["due_at"] and task["sla_state"] == "on_track"
    assert task_for(other_region, commitment["id"]) is None
    assert marketer.post(f"/workflow/v1/tasks/{task['id']}/approve", json={"comment": "mine"}).status_code == 403

    r = approver.post(f"/workflow/v1/tasks/{task['id']}/approve", json={"comment": "Budgeted in Q1 plan"})
    assert r.status_code == 200, r.text
    done = wait_for(
        lambda: balance(marketer, line, "2031-03")["committed"] == "25000.00" and balance(marketer, line, "2031-03"),
        what="commitment committed",
    )
    assert (done["pending"], done["available"]) == ("0.00", "25000.00")

    r = marketer.post(
        "/budget/v1/commitments",
        json={
            "line_id": line,
            "period": "2031-03",
            "amount": "15000.00",
            "currency": "EUR",
            "external_ref": "PO-E2E-2",
        },
    )
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
    second = r.json()["id"]
    assert balance(marketer, line, "2031-03")["available"] == "10000.00"
    task = wait_for(lambda: task_for(approver, second), what="second task")
    assert approver.post(f"/workflow/v1/tasks/{task['id']}/reject", json={"comment": "No"}).status_code == 200
    released = wait_for(
        lambda: balance(marketer, line, "2031-03")["pending"] == "0.00" and balance(marketer, line, "2031-03"),
        what="hold released",
    )
    assert (released["committed"], released["available"]) == ("25000.00", "25000.00")

    # A marketer scoped to EMEA cannot touch an APAC line.
    apac = admin.post(
        f"/budget/v1/plans/{ids['_plan']}/lines",
        json={"code": "APAC", "name": "APAC", "dimensions": {"region": "APAC"}},
    )
    assert apac.status_code == 201, apac.text
    r = marketer.post(
        "/budget/v1/commitments",
        json={"line_id": apac.json()["id"], "period": "2031-03", "amount": "10.00", "currency": "EUR"},
    )
    assert r.status_code == 403, r.text


def test_erp_invoices_and_crm_revenue_become_spend_cost_per_lead_and_roi(cluster: Cluster):
    admin = cluster.client("ada", "admin")
    ids = setup_plan(
        admin,
        2032,
        [
            {"code": "NA-SEARCH", "name": "NA search", "dimensions": {"region": "NA", "channel": "search"}},
        ],
        {"NA-SEARCH": "90000.00"},
        "2032-04",
    )
    po = {
        "po_number": "PO-7001",
        "revision": 1,
        "fiscal_year": 2032,
        "budget_line": "NA-SEARCH",
        "period": "2032-04",
        "amount": "5000.00",
        "currency": "EUR",
        "vendor": "Searchy",
        "description": "April search",
    }
    r = cluster.webhook("erp", "purchase_order.created", po, delivery="erp-d-1")
    assert r.status_code == 202, r.text
    assert cluster.webhook("erp", "purchase_order.created", po, delivery="erp-d-1").json()["duplicate"] is True
    wait_for(lambda: balance(admin, ids["NA-SEARCH"], "2032-04")["committed"] == "5000.00", what="PO committed")

    invoice = {
        "invoice_number": "INV-9001",
        "po_number": "PO-7001",
        "fiscal_year": 2032,
        "budget_line": "NA-SEARCH",
        "period": "2032-04",
        "amount": "1200.00",
        "currency": "EUR",
        "vendor": "Searchy",
    }
    assert cluster.webhook("erp", "invoice.posted", invoice).status_code == 202
    b = wait_for(
        lambda: (
            balance(admin, ids["NA-SEARCH"], "2032-04")["spent"] == "1200.00"
            and balance(admin, ids["NA-SEARCH"], "2032-04")
        ),
        timeout=5,
        what="invoice spent",
    )
    assert b["committed"] == "3800.00"
    assert wait_for(
        lambda: series_total(admin, "spend", "2032-04-01", "2032-04-30", filter="region:NA") == Decimal("1200.00"),
        timeout=5,
        what="spend in KPI",
    )

    for i in range(3):
        lead = {
            "id": f"L-{i}",
            "time": "2032-04-10T10:00:00Z",
            "channel": "search",
            "campaign": "spring",
            "region": "NA",
        }
        assert cluster.webhook("crm", "lead.created", lead).status_code == 202
    won = {
        "id": "O-1",
        "time": "2032-04-20T10:00:00Z",
        "channel": "search",
        "campaign": "spring",
        "region": "NA",
        "amount": "3000.00",
    }
    assert cluster.webhook("crm", "opportunity.won", won).status_code == 202
    assert wait_for(
        lambda: series_total(admin, "cpl", "2032-04-01", "2032-04-30", filter="region:NA") == Decimal("400"),
        what="cost per lead = 1200 / 3",
    )
    # ROI = (3000 - 1200) / 1200, from real spend and real revenue.
    assert wait_for(
        lambda: series_total(admin, "roi", "2032-04-01", "2032-04-30", filter="region:NA") == Decimal("1.5"),
        what="roi from revenue and spend",
    )


def test_contracts_commit_their_cost_and_a_renewal_coming_due_starts_a_review_with_the_notice_deadline(
    cluster: Cluster,
):
    admin = cluster.client("ada", "admin")
    today = dt.date.today()
    ids = setup_plan(
        admin,
        today.year,
        [
            {"code": "MARTECH", "name": "Martech", "dimensions": {"region": "GLOBAL", "channel": "martech"}},
        ],
        {"MARTECH": "60000.00"},
        f"{today.year}-{today.month:02d}",
    )
    tool = admin.post(
        "/registry/v1/tools",
        json={
            "name": f"Acme CRM {uuid.uuid4().hex[:4]}",
            "vendor": "Acme",
            "category": "social_relationships",
            "capabilities": ["crm", "email"],
            "owner": {"team": "mops", "person": "dana"},
            "lifecycle": "active",
        },
    )
    assert tool.status_code == 201, tool.text
    # Ends so soon that the notice deadline is inside the renewal lead time: the review starts now.
    start, end = today.replace(day=1), today + dt.timedelta(days=60 + 10)
    contract = admin.post(
        "/registry/v1/contracts",
        json={
            "tool_id": tool.json()["id"],
            "start": start.isoformat(),
            "end": end.isoformat(),
            "billing_period": "annual",
            "cost": "9000.00",
            "currency": "EUR",
            "seats": 50,
            "auto_renew": True,
            "notice_days": 60,
            "budget_line_code": "MARTECH",
        },
    )
    assert contract.status_code == 201, contract.text
    contract_id = contract.json()["id"]
    period = f"{start.year}-{start.month:02d}"
    terms = admin.get(f"/registry/v1/contracts/{contract_id}").json()["terms"]
    expected = terms[0]["commit_amount"]  # the whole (short) term, prorated by the registry
    assert Decimal(expected) < Decimal("9000.00")
    wait_for(
        lambda: balance(admin, ids["MARTECH"], period)["committed"] == expected,
        what="contract cost committed on MARTECH",
    )

    mops = cluster.client("mo", "mops")

    def renewal_task():
        for task in mops.get("/workflow/v1/tasks", params={"assignee": "me"}).json()["items"]:
            inst = mops.get(f"/workflow/v1/instances/{task['instance_id']}").json()
            if inst["subject"]["id"] == contract_id and inst["definition_key"] == "tool-renewal":
                return task
        return None

    task = wait_for(renewal_task, what="tool-renewal review task")
    notice = end - dt.timedelta(days=60)
    due = dt.datetime.fromisoformat(task["due_at"])
    end_of_notice_day = dt.datetime.combine(notice + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    assert abs(due - end_of_notice_day) <= dt.timedelta(hours=14), (task["due_at"], notice)


def test_an_sla_breach_escalates_to_the_configured_role_and_counts_in_sla_attainment(cluster: Cluster):
    admin = cluster.client("ada", "admin")
    key = f"social-{uuid.uuid4().hex[:6]}"
    assert (
        admin.post(
            "/workflow/v1/calendars",
            json={
                "key": f"always-{key}",
                "timezone": "UTC",
                "hours": {d: ["00:00", "24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
            },
        ).status_code
        == 201
    )
    r = admin.post(
        "/workflow/v1/definitions",
        json={
            "key": key,
            "name": "Social fast track",
            "trigger": {
                "event": "budget.commitment.requested",
                "priority": 10,
                "conditions": [{"field": "campaign", "op": "eq", "value": key}],
            },
            "stages": [
                {
                    "name": "Social approval",
                    "assignees": {"roles": ["approver"], "users": []},
                    "mode": "any",
                    "sla": {"business_hours": "0.001", "calendar": f"always-{key}", "warn_at": 0.5},
                    "escalation": {"reassign_to_role": "mops"},
                }
            ],
        },
    )
    assert r.status_code == 201, r.text
    today = dt.date.today()
    period = f"{today.year + 10}-01"
    ids = setup_plan(
        admin,
        today.year + 10,
        [
            {
                "code": "SOCIAL",
                "name": "Social",
                "dimensions": {"region": "EMEA", "channel": "social", "campaign": key},
            },
        ],
        {"SOCIAL": "50000.00"},
        period,
    )
    c = admin.post(
        "/budget/v1/commitments",
        json={"line_id": ids["SOCIAL"], "period": period, "amount": "12000.00", "currency": "EUR"},
    )
    assert c.status_code == 201 and c.json()["status"] == "pending_approval", c.text
    mops = cluster.client("mo", "mops")
    task = wait_for(lambda: task_for(mops, c.json()["id"]), timeout=20, what="escalated task in the mops inbox")
    assert task["sla_state"] == "breached"
    assert mops.post(f"/workflow/v1/tasks/{task['id']}/approve", json={"comment": "late, but fine"}).status_code == 200
    wait_for(lambda: balance(admin, ids["SOCIAL"], period)["committed"] == "12000.00", what="committed")
    day = today.isoformat()
    assert wait_for(
        lambda: series_total(admin, "sla_breaches", day, day, filter=f"definition:{key}") == 1,
        what="breach counted in KPI",
    )
    assert wait_for(
        lambda: series_total(admin, "sla_attainment", day, day, filter=f"definition:{key}") == 0,
        what="SLA attainment 0 for this definition",
    )


def test_the_gateway_merges_every_trail_newest_first_and_pages_it_whole(cluster: Cluster):
    admin = cluster.client("ada", "admin")
    for _ in range(3):
        key = admin.post("/gateway/v1/api-keys", json={"name": f"audit-{uuid.uuid4().hex[:6]}", "roles": ["analyst"]})
        assert key.status_code == 201, key.text
    assert admin.delete(f"/gateway/v1/api-keys/{key.json()['id']}").status_code == 204
    code = f"AU-{uuid.uuid4().hex[:4]}"
    line_id = setup_plan(admin, 2031, [{"code": code, "name": "Audit"}], {code: "100.00"}, "2031-01")[code]

    first = admin.get("/gateway/v1/audit", params={"limit": 5})
    assert first.status_code == 200, first.text
    page = first.json()
    times = [e["at"] for e in page["items"]]
    assert times == sorted(times, reverse=True) and len(times) == 5
    everything = admin.get("/gateway/v1/audit", params={"limit": 500}).json()["items"]
    services = {e["service"] for e in everything}
    assert {"gateway", "budget"} <= services, services
    revoked, created = [e for e in everything if e["entity"] == "api_key" and e["entity_id"] == key.json()["id"]]
    assert created["actor"] == "ada" and created["method"] == "POST" and "hash" not in str(created["after"])
    assert revoked["action"] == "gateway.api_key.revoked" and revoked["before"]["revoked_at"] is None
    assert revoked["after"]["revoked_at"] is not None
    line = [e for e in everything if e["service"] == "budget" and e["entity_id"] == line_id]
    assert line and all(e["actor"] == "ada" and e["request_id"] for e in line)

    # Paging the merged trail yields the same entries as one long page, in the same order, once each.
    paged, cursor = [], None
    while True:
        r = admin.get("/gateway/v1/audit", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        paged += r["items"]
        cursor = r["next_cursor"]
        if not cursor or len(paged) > 600:
            break
    ids = [(e["service"], e["id"]) for e in paged]
    assert len(ids) == len(set(ids))
    assert ids[: len(everything)] == [(e["service"], e["id"]) for e in everything][: len(ids)]

    only = admin.get("/gateway/v1/audit", params={"service": "budget", "entity_id": line_id}).json()["items"]
    assert only and {e["service"] for e in only} == {"budget"}
    exported = admin.get("/gateway/v1/audit", params={"format": "csv", "limit": 20})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == min(20, len(everything)) and rows[0]["service"]

    viewer = cluster.client("vic", "analyst")
    assert viewer.get("/gateway/v1/audit").status_code == 403


def test_invoices_through_the_gateway_become_discovery_candidates_and_a_merge_is_learned(cluster: Cluster):
    admin = cluster.client("ada", "admin")
    ids = setup_plan(
        admin, 2036, [{"code": "STACK", "name": "Stack", "dimensions": {}}], {"STACK": "90000.00"}, "2036-02"
    )
    vendor = f"Shadow Analytics {uuid.uuid4().hex[:6]}"
    tool = admin.post("/registry/v1/tools", json={"name": f"Insight {vendor[-6:]}", "category": "data"}).json()

    def invoice(number: str, name: str, amount: str) -> None:
        body = {"invoice_number": number, "fiscal_year": 2036, "budget_line": "STACK", "period": "2036-02",
                "amount": amount, "currency": "EUR", "vendor": name}  # fmt: skip
        assert cluster.webhook("erp", "invoice.posted", body).status_code == 202

    invoice(f"INV-{vendor}-1", f"{vendor}, Inc.", "700.00")
    invoice(f"INV-{vendor}-2", vendor.upper(), "300.00")

    def candidate():
        for item in admin.get("/registry/v1/discovery").json()["items"]:
            if item["vendor"].startswith(vendor) and item["lines"] == 2:
                return item
        return None

    found = wait_for(candidate, what="a discovery candidate from two invoices")
    assert found["spend"] == [{"currency": "EUR", "amount": "1000.00"}] and found["line_codes"] == ["STACK"]
    r = admin.post(f"/registry/v1/discovery/{found['id']}/merge", json={"tool_id": tool["id"]})
    assert r.status_code == 200 and r.json()["status"] == "merged", r.text
    invoice(f"INV-{vendor}-3", vendor.lower(), "500.00")  # the alias is learned: no new candidate
    wait_for(lambda: balance(admin, ids["STACK"], "2036-02")["spent"] == "1500.00", what="third invoice spent")
    spend = wait_for(
        lambda: (s := admin.get(f"/registry/v1/tools/{tool['id']}/spend").json())["lines"] == 3 and s,
        what="the three invoices on the tool",
    )
    assert spend["spend"] == [{"currency": "EUR", "amount": "1500.00"}]
    items = admin.get("/registry/v1/discovery").json()["items"]
    assert all(not i["vendor"].lower().startswith(vendor.lower()) for i in items)


def test_a_cheaper_renewal_through_the_gateway_is_a_stack_saving_in_the_kpis(cluster: Cluster):
    """registry.saving.recorded travels from the registry's process to the KPI's: a renewal with fewer seats
    saves the difference per year from the month the new term starts."""
    admin = cluster.client("ada", "admin")
    tool = admin.post("/registry/v1/tools", json={"name": f"Seats {uuid.uuid4().hex[:6]}", "category": "data"}).json()
    body = {"tool_id": tool["id"], "start": "2039-01-01", "end": "2039-12-31", "billing_period": "annual",
            "cost": "12000.00", "currency": "EUR", "seats": 50, "auto_renew": True, "notice_days": 60}  # fmt: skip
    contract = admin.post("/registry/v1/contracts", json=body)
    assert contract.status_code == 201, contract.text
    r = admin.post(f"/registry/v1/contracts/{contract.json()['id']}/renew", json={"cost": "9000.00", "seats": 30})
    assert r.status_code == 200, r.text
    wait_for(
        lambda: (
            series_total(admin, "stack_savings", "2040-01-01", "2040-01-31", filter="kind:seat_reduction")
            == Decimal("3000.00")
        ),
        what="the seat reduction's saving in the KPIs",
    )
    report = admin.get("/registry/v1/reports/savings", params={"from": "2040-01", "to": "2040-01"}).json()
    assert [(i["tool_id"], i["kind"], i["annual_saving"]) for i in report["items"]] == [
        (tool["id"], "seat_reduction", "3000.00")
    ]


def test_a_client_generated_from_the_gateways_document_walks_the_tour(cluster: Cluster, tmp_path: Path):
    """The merged /openapi.json is a contract a partner can build on: openapi-python-client generates a
    typed client from it, and the README's tour runs through that client's models and calls."""
    doc = wait_for(lambda: _whole_document(cluster.gateway), timeout=60, what="every service's part")
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values() if "operationId" in op]
    assert len(ids) == len(set(ids)), "operation ids name the client's calls: they must be unique"
    (tmp_path / "openapi.json").write_text(json.dumps(doc))
    bin_dir = Path(sys.executable).parent
    made = subprocess.run(
        [str(bin_dir / "openapi-python-client"), "generate", "--path", "openapi.json", "--meta", "none"]
        + ["--output-path", "pitcrew_client"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        timeout=300,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    # Only the text/csv and YAML uploads are beyond the generator; every JSON operation is generated.
    skipped = [line for line in made.stdout.splitlines() if "will not be generated" in line]
    assert all(any(p in line for p in ("/import", "/usage/import")) for line in skipped), skipped
    sys.path.insert(0, str(tmp_path))
    try:
        _tour(cluster, importlib.import_module)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "pitcrew_client" or m.startswith("pitcrew_client.")]:
            del sys.modules[name]


def _whole_document(gateway: str) -> dict | None:
    doc = httpx.get(f"{gateway}/openapi.json", timeout=60).json()
    return None if doc.get("x-pitcrew-unavailable") else doc


def _tour(cluster: Cluster, load) -> None:
    client_mod = load("pitcrew_client")
    token = cluster.client("ada", "admin").headers["Authorization"].split(" ", 1)[1]
    api = client_mod.AuthenticatedClient(base_url=cluster.gateway, token=token, timeout=httpx.Timeout(30))
    models = load("pitcrew_client.models")

    def call(module: str, **kwargs):
        service = module.split("_", 1)[0] if module.split("_", 1)[0] in SERVICE_NAMES else "gateway"
        r = load(f"pitcrew_client.api.{service}.{module}").sync_detailed(client=api, **kwargs)
        assert 200 <= r.status_code < 300, (module, r.status_code, r.content[:500])
        return r.parsed

    plan = call(
        "budget_create_plan",
        body=models.BudgetPlanIn(name=f"Typed {uuid.uuid4().hex[:6]}", fiscal_year=2032, currency="EUR"),
    )
    assert isinstance(plan, models.BudgetPlanOut) and plan.currency == "EUR"
    line = call("budget_create_line", plan_id=plan.id, body=models.BudgetLineIn(code="TYPED-1", name="Typed events"))
    call("budget_activate_plan", plan_id=plan.id)
    call(
        "budget_allocate",
        body=models.BudgetAllocationIn(line_id=line.id, period="2032-03", amount="5000.00", currency="EUR"),
    )
    call(
        "budget_commit",
        body=models.BudgetCommitmentIn(line_id=line.id, period="2032-03", amount="1200.50", currency="EUR"),
    )
    balance = call("budget_line_balance", line_id=line.id, from_="2032-01", to="2032-12")
    assert Decimal(balance.allocated) == Decimal("5000.00") and Decimal(balance.committed) == Decimal("1200.50")
    assert Decimal(balance.available) == Decimal("3799.50")
    definitions = call("workflow_list_definitions")
    assert definitions.items
    call("workflow_inbox")
    metrics = call("kpi_list_metrics")
    assert metrics.items
    tool = call(
        "registry_create_tool",
        body=models.RegistryToolIn(
            name=f"Typed CRM {uuid.uuid4().hex[:4]}", vendor="Acme", category="social_relationships"
        ),
    )
    assert tool.id
    analysis = call("registry_analysis")
    assert analysis is not None
    key = call("create_api_key", body=models.ApiKeyIn(name="typed-client", roles=["analyst"]))
    assert key.key.startswith("pck_")


def test_crm_stage_changes_and_a_lost_opportunity_become_cohort_conversions_through_the_gateway(cluster: Cluster):
    """lead.created, lead.stage_changed (MQL, then SQL) and opportunity.lost, signed webhooks to the real
    gateway, reach the real KPI service as lifecycle facts: the cohorts and the mql_to_sql_rate series
    (a cohort conversion metric) count them, a repeated stage change counts once."""
    admin = cluster.client("ada", "admin")
    region = f"LC-{uuid.uuid4().hex[:6]}"  # this test's entities alone
    base = {"channel": "search", "region": region}

    def send(type_: str, data: dict) -> None:
        r = cluster.webhook("crm", type_, {**base, **data})
        assert r.status_code == 202, r.text

    for lead, day in (("a", 2), ("b", 2), ("c", 3)):
        send("lead.created", {"id": f"{region}-{lead}", "time": f"2033-05-0{day}T09:00:00Z"})
    send("lead.stage_changed", {"id": f"{region}-a", "time": "2033-05-03T09:00:00Z", "stage": "MQL"})
    send("lead.stage_changed", {"id": f"{region}-a", "time": "2033-05-06T09:00:00Z", "stage": "SQL"})
    send("lead.stage_changed", {"id": f"{region}-a", "time": "2033-05-07T09:00:00Z", "stage": "sql"})  # a repeat
    send("lead.stage_changed", {"id": f"{region}-b", "time": "2033-05-04T09:00:00Z", "stage": "MQL"})
    send("lead.stage_changed", {"id": f"{region}-c", "time": "2033-05-05T09:00:00Z", "stage": "MQL"})
    lost = {"id": f"{region}-opp-b", "lead_id": f"{region}-b", "time": "2033-05-10T09:00:00Z"}
    send("opportunity.lost", lost)
    bad = cluster.webhook("crm", "lead.stage_changed", {**base, "id": f"{region}-c", "time": "2033-05-08T09:00:00Z"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "data.stage", bad.text

    def cohort(from_stage: str, to_stage: str) -> dict:
        params = {"from_stage": from_stage, "to_stage": to_stage, "period": "2033-05", "window_days": 30}
        r = admin.get("/kpi/v1/cohorts", params={**params, "group_by": "region"})
        assert r.status_code == 200, r.text
        return next(i for i in r.json()["items"] if i["group"]["region"] == region)

    sql = wait_for(
        lambda: (c := cohort("mql", "sql"))["entered"] == 3 and c["converted"] == 1 and c,
        what="MQL -> SQL cohort: 3 entered, 1 converted",
    )
    assert sql["rate"] == "0.3333" and sql["median_days"] == "3.00"
    lost_cohort = wait_for(
        lambda: (c := cohort("mql", "lost"))["converted"] == 1 and c, what="MQL -> lost: the lost opportunity"
    )
    assert lost_cohort["entered"] == 3 and lost_cohort["median_days"] == "6.00"
    assert cohort("lead", "mql")["converted"] == 3
    assert series_total(admin, "mqls", "2033-05-01", "2033-05-31", filter=f"region:{region}") == Decimal(3)
    assert series_total(admin, "sqls", "2033-05-01", "2033-05-31", filter=f"region:{region}") == Decimal(1)
    rate = series_total(admin, "mql_to_sql_rate", "2033-05-01", "2033-05-31", filter=f"region:{region}")
    assert rate is not None and rate.quantize(Decimal("0.0001")) == Decimal("0.3333")
    # A partner (the CRM's own role) may feed lifecycle facts but an analyst may not.
    fact = {"items": [{"entity_id": f"{region}-d", "stage": "lead", "time": "2033-05-09T09:00:00Z"}]}
    assert cluster.client("crm-bot", "partner").post("/kpi/v1/lifecycle", json=fact).status_code == 200
    assert cluster.client("ann", "analyst").post("/kpi/v1/lifecycle", json=fact).status_code == 403
