"""Two budget and two workflow processes on PostgreSQL behind one gateway.

Each event is handled once per service (not once per replica), each SLA timer fires
once, no line is overdrawn by 1,000 concurrent commitments, and both replicas serve.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import pytest

from pitcrew.launcher import free_port, start_stack
from pitcrew.topology import APPS, PROCESSES
from shared.identity import HEADER, Principal, mint
from shared.settings import DEV_IDENTITY_SECRET
from tests.conftest import BACKEND, POSTGRES_URL
from tests.e2e.conftest import WEBHOOK_SECRETS, Cluster, wait_for
from tests.e2e.test_flows import balance, setup_plan

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]


async def _create_databases(names: list[str]) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_databases(names: list[str]) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory, own_nats) -> Iterator[Cluster]:
    if BACKEND != "postgres":
        pytest.fail("the replica test needs PITCREW_TEST_BACKEND=postgres (make test-postgres)")
    nats_server = own_nats
    run = uuid.uuid4().hex[:8]
    names = {app: f"pitcrew_t_rep_{app}_{run}" for app in APPS}
    asyncio.run(_create_databases(list(names.values())))
    base = POSTGRES_URL.rpartition("/")[0]
    var = tmp_path_factory.mktemp("replicas")
    env = dict(os.environ)
    env.update({f"PITCREW_{app.upper()}_PORT": str(free_port()) for app in PROCESSES})
    env.update({f"PITCREW_{app.upper()}_DATABASE_URL": f"{base}/{db}" for app, db in names.items()})
    env["PITCREW_GATEWAY_WEBHOOK_SECRETS"] = json.dumps(WEBHOOK_SECRETS)
    env["PITCREW_GATEWAY_RATE_LIMIT_WRITE"] = "100000/minute"
    env["PITCREW_GATEWAY_RATE_LIMIT_READ"] = "100000/minute"
    stack, urls, _ = start_stack(
        var_dir=Path(var),
        env=env,
        nats_url=nats_server.url,
        echo=lambda *_: None,
        replicas={"budget": 2, "workflow": 2},
        ready_timeout=180,
    )
    try:
        yield Cluster(stack, urls, nats_server)
    finally:
        stack.stop()
        asyncio.run(_drop_databases(list(names.values())))


def metric_sum(url: str, name: str, **labels: str) -> float:
    total = 0.0
    internal = {HEADER: mint(Principal("ops", frozenset({"admin"})), DEV_IDENTITY_SECRET)}
    for line in httpx.get(f"{url}/metrics", headers=internal, timeout=10).text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def replicas(cluster: Cluster, app: str) -> list[str]:
    return [c.url for c in cluster.stack.children if re.fullmatch(rf"{app}(#\d+)?", c.name)]


def test_replicas_share_the_work_without_doing_it_twice(replicated: Cluster):
    cluster = replicated
    admin = cluster.client("ada", "admin")
    key = f"rep-{uuid.uuid4().hex[:6]}"
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
    assert (
        admin.post(
            "/workflow/v1/definitions",
            json={
                "key": key,
                "name": "Replica approvals",
                "trigger": {
                    "event": "budget.commitment.requested",
                    "priority": 10,
                    "conditions": [{"field": "campaign", "op": "eq", "value": key}],
                },
                "stages": [
                    {
                        "name": "Approve",
                        "assignees": {"roles": ["approver"], "users": []},
                        "mode": "any",
                        "sla": {"business_hours": "0.0008", "calendar": f"always-{key}", "warn_at": 0.5},
                        "escalation": {"reassign_to_role": "mops"},
                    }
                ],
            },
        ).status_code
        == 201
    )
    ids = setup_plan(
        admin,
        2051,
        [
            {"code": "BULK", "name": "Bulk", "dimensions": {"region": "EMEA", "channel": "search"}},
            {
                "code": "APPROVE",
                "name": "Approvals",
                "dimensions": {"region": "EMEA", "channel": "social", "campaign": key},
            },
        ],
        {"BULK": "600000.00", "APPROVE": "500000.00"},
        "2051-01",
    )

    # 1,000 concurrent commitments of 1,000.00 against 600,000.00: exactly 600 fit.
    def commit(i: int) -> int:
        return admin.post(
            "/budget/v1/commitments",
            json={
                "line_id": ids["BULK"],
                "period": "2051-01",
                "amount": "1000.00",
                "currency": "EUR",
                "external_ref": f"BULK-{i}",
            },
        ).status_code

    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(commit, range(1000)))
    assert codes.count(201) == 600 and codes.count(409) == 400, {c: codes.count(c) for c in set(codes)}
    b = balance(admin, ids["BULK"], "2051-01")
    assert (b["committed"], b["available"]) == ("600000.00", "0.00")

    # 20 approvals: each SLA breaches (timers on two workflow replicas), then each is approved.
    requested = []
    for i in range(20):
        r = admin.post(
            "/budget/v1/commitments",
            json={
                "line_id": ids["APPROVE"],
                "period": "2051-01",
                "amount": "12000.00",
                "currency": "EUR",
                "external_ref": f"APP-{i}",
            },
        )
        assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
        requested.append(r.json()["id"])
    mops = cluster.client("mo", "mops")

    def breached_tasks() -> list[dict]:
        items = mops.get("/workflow/v1/tasks", params={"assignee": "me", "limit": 200}).json()["items"]
        return [t for t in items if t["sla_state"] == "breached"]

    wait_for(lambda: len(breached_tasks()) >= 20, timeout=60, what="20 breached, escalated tasks")
    for task in breached_tasks():
        assert mops.post(f"/workflow/v1/tasks/{task['id']}/approve", json={"comment": "ok"}).status_code == 200
    wait_for(
        lambda: balance(admin, ids["APPROVE"], "2051-01")["committed"] == "240000.00",
        timeout=60,
        what="all 20 committed",
    )

    budget_urls, workflow_urls = replicas(cluster, "budget"), replicas(cluster, "workflow")
    assert len(budget_urls) == 2 and len(workflow_urls) == 2
    applied = sum(
        metric_sum(u, "pitcrew_events_handled_total", subject="workflow.instance.approved", outcome="applied")
        for u in budget_urls
    )
    assert applied == 20  # once per service, not once per replica
    started = sum(
        metric_sum(u, "pitcrew_events_handled_total", subject="budget.commitment.requested", outcome="applied")
        for u in workflow_urls
    )
    assert started == 20
    fired = sum(metric_sum(u, "pitcrew_timers_fired_total") for u in workflow_urls)
    assert fired == 40  # a warning and a breach per task, each fired once across both replicas
    for url in budget_urls + workflow_urls:
        assert metric_sum(url, "pitcrew_http_requests_total") > 10, f"{url} served no traffic"
