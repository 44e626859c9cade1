"""Nothing lost, nothing doubled: NATS stopped mid-flow, service processes killed mid-flow."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from tests.e2e.conftest import Cluster, wait_for
from tests.e2e.test_flows import balance, series_total, setup_plan, task_for

pytestmark = pytest.mark.e2e


def tasks_for(client, commitment_id: str) -> list[dict]:
    out = []
    for task in client.get("/workflow/v1/tasks", params={"assignee": "me"}).json()["items"]:
        inst = client.get(f"/workflow/v1/instances/{task['instance_id']}").json()
        if inst["subject"]["id"] == commitment_id:
            out.append(task)
    return out


def invoice(code: str, year: int, period: str, number: str, amount: str) -> dict:
    return {
        "invoice_number": number,
        "fiscal_year": year,
        "budget_line": code,
        "period": period,
        "amount": amount,
        "currency": "EUR",
        "vendor": "Faulty Ltd",
    }


def test_flows_complete_exactly_once_when_nats_stops_in_the_middle(cluster: Cluster):
    admin = cluster.client("ada", "admin")
    code = f"F-{uuid.uuid4().hex[:6].upper()}"
    ids = setup_plan(
        admin,
        2041,
        [{"code": code, "name": "Fault line", "dimensions": {"region": "EMEA", "channel": f"ch{code[-4:]}"}}],
        {code: "100000.00"},
        "2041-02",
    )
    approver = cluster.client("erik", "approver", scopes=("region:EMEA",))
    cluster.nats.stop()
    try:
        c = admin.post(
            "/budget/v1/commitments",
            json={"line_id": ids[code], "period": "2041-02", "amount": "20000.00", "currency": "EUR"},
        )
        assert c.status_code == 201 and c.json()["status"] == "pending_approval", c.text
        for i in range(5):
            assert (
                cluster.webhook(
                    "erp", "invoice.posted", invoice(code, 2041, "2041-02", f"INV-{code}-{i}", "100.00")
                ).status_code
                == 202
            )
        wait_for(lambda: balance(admin, ids[code], "2041-02")["spent"] == "500.00", what="invoices posted")
    finally:
        cluster.nats.start()
    task = wait_for(lambda: task_for(approver, c.json()["id"]), timeout=60, what="task after NATS is back")
    assert approver.post(f"/workflow/v1/tasks/{task['id']}/approve", json={"comment": "ok"}).status_code == 200
    wait_for(lambda: balance(admin, ids[code], "2041-02")["committed"] == "20000.00", timeout=30)
    channel = f"ch{code[-4:]}"
    assert wait_for(
        lambda: (
            series_total(admin, "spend", "2041-02-01", "2041-02-28", filter=f"channel:{channel}") == Decimal("500.00")
        ),
        timeout=30,
        what="spend in KPI",
    )
    b = balance(admin, ids[code], "2041-02")
    assert (b["allocated"], b["committed"], b["pending"], b["spent"], b["available"]) == (
        "100000.00",
        "20000.00",
        "0.00",
        "500.00",
        "79500.00",
    )
    assert len(tasks_for(approver, c.json()["id"])) == 0  # decided, and no duplicate task appeared


def test_flows_complete_exactly_once_when_services_are_killed_in_the_middle(cluster: Cluster):
    admin = cluster.client("ada", "admin")
    code = f"K-{uuid.uuid4().hex[:6].upper()}"
    channel = f"ch{code[-4:]}"
    ids = setup_plan(
        admin,
        2042,
        [{"code": code, "name": "Kill line", "dimensions": {"region": "EMEA", "channel": channel}}],
        {code: "100000.00"},
        "2042-05",
    )
    approver = cluster.client("erik", "approver", scopes=("region:EMEA",))

    cluster.stack.kill("workflow")
    c = admin.post(
        "/budget/v1/commitments",
        json={"line_id": ids[code], "period": "2042-05", "amount": "30000.00", "currency": "EUR"},
    )
    assert c.status_code == 201 and c.json()["status"] == "pending_approval", c.text
    cluster.stack.kill("kpi")
    for i in range(4):
        assert (
            cluster.webhook(
                "erp", "invoice.posted", invoice(code, 2042, "2042-05", f"INV-{code}-{i}", "250.00")
            ).status_code
            == 202
        )
    cluster.stack.restart("workflow", timeout=180)
    task = wait_for(lambda: task_for(approver, c.json()["id"]), timeout=60, what="task after workflow restart")

    cluster.stack.kill("budget")
    assert approver.post(f"/workflow/v1/tasks/{task['id']}/approve", json={"comment": "ok"}).status_code == 200
    cluster.stack.restart("budget", timeout=180)
    cluster.stack.restart("kpi", timeout=180)
    wait_for(
        lambda: balance(admin, ids[code], "2042-05")["committed"] == "30000.00",
        timeout=60,
        what="approval applied after budget restart",
    )
    assert wait_for(
        lambda: (
            series_total(admin, "spend", "2042-05-01", "2042-05-31", filter=f"channel:{channel}") == Decimal("1000.00")
        ),
        timeout=60,
        what="spend counted once after KPI restart",
    )
    b = balance(admin, ids[code], "2042-05")
    assert (b["committed"], b["pending"], b["spent"], b["available"]) == ("30000.00", "0.00", "1000.00", "69000.00")
