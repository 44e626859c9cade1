"""Renewal reviews that act, through a real NATS: registry, workflow and budget in process.

A contract whose reminder is due at once starts the workflow's `tool-renewal` review; the review's
outcome comes back as workflow instance events and changes the contract (renew: the next term and
its budget commitment; cancel: notice before the deadline; renegotiate: waits, then renews on the new
terms); a decision after the notice deadline is reported late, with the auto-renewal that happened.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from pitcrew.migrations import upgrade_async
from services.budget.main import create_app as create_budget
from services.budget.models import commitments
from services.budget.settings import Settings as BudgetSettings
from services.registry.models import Contract, ContractTerm
from services.workflow.main import create_app as create_workflow
from services.workflow.settings import Settings as WorkflowSettings
from shared.errors import Invalid
from shared.events import Envelope
from tests.conftest import NatsServer, eventually
from tests.harness import identity
from tests.registry.conftest import ADMIN, make_settings, make_tool, running

pytestmark = pytest.mark.db

MOPS_REVIEWER = identity("rita", "mops")


@pytest.fixture()
def own_nats(tmp_path: Path) -> Any:
    """A NATS of the test's own: the three services' durable consumers start from an empty stream."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


class Loop:
    def __init__(self, registry: Any, workflow: Any, budget: Any):
        self.apps = {"registry": registry, "workflow": workflow, "budget": budget}
        self.c = {
            name: httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                base_url=f"http://{name}",
                headers=ADMIN,
            )
            for name, app in self.apps.items()
        }

    async def ok(self, service: str, method: str, url: str, status: int = 200, **kw: Any) -> Any:
        r = await self.c[service].request(method, url, **kw)
        assert r.status_code == status, r.text
        return r.json()

    async def fund(self, years: set[int], periods: set[str]) -> None:
        """A plan per fiscal year with a MARTECH line, money in each period a term starts in."""
        for year in sorted(years):
            plan = await self.ok(
                "budget", "POST", "/v1/plans", 201, json={"name": f"FY{year}", "fiscal_year": year, "currency": "EUR"}
            )
            await self.ok("budget", "POST", f"/v1/plans/{plan['id']}/activate")
            line = await self.ok(
                "budget",
                "POST",
                f"/v1/plans/{plan['id']}/lines",
                201,
                json={"code": "MARTECH", "name": "Martech", "dimensions": {}},
            )
            for period in sorted(p for p in periods if p.startswith(str(year))):
                await self.ok(
                    "budget",
                    "POST",
                    "/v1/allocations",
                    201,
                    json={"line_id": line["id"], "period": period, "amount": "500000.00", "currency": "EUR"},
                )

    async def commitment(self, ref: str) -> Any:
        rt = self.apps["budget"].state.runtime
        async with rt.transaction(readonly=True) as s:
            return (await s.execute(select(commitments).where(commitments.c.external_ref == ref))).first()

    async def review_task(self, contract_id: str) -> dict[str, Any] | None:
        tasks = (await self.c["workflow"].get("/v1/tasks", params={"assignee": "me"}, headers=MOPS_REVIEWER)).json()
        for task in tasks["items"]:
            inst = await self.ok("workflow", "GET", f"/v1/instances/{task['instance_id']}")
            if inst["subject"]["id"] == contract_id and inst["definition_key"] == "tool-renewal":
                return task
        return None

    async def decisions(self, contract_id: str) -> list[dict[str, Any]]:
        page = await self.ok("registry", "GET", "/v1/renewals/decisions", params={"contract_id": contract_id})
        return page["items"]


@contextlib.asynccontextmanager
async def loop_of(new_db: Any, nats_url: str, **registry_settings: Any) -> AsyncIterator[Loop]:
    urls = {}
    for name in ("registry", "workflow", "budget"):
        urls[name] = await new_db(name)
        await upgrade_async(name, urls[name])
    wf = create_workflow(WorkflowSettings(database_url=urls["workflow"], nats_url=nats_url, outbox_poll_seconds=0.05))
    budget = create_budget(BudgetSettings(database_url=urls["budget"], nats_url=nats_url, outbox_poll_seconds=0.05))
    async with (
        running(make_settings(urls["registry"], nats_url, **registry_settings)) as registry,
        wf.router.lifespan_context(wf),
        budget.router.lifespan_context(budget),
    ):
        loop = Loop(registry, wf, budget)
        try:
            yield loop
        finally:
            for c in loop.c.values():
                await c.aclose()


def minor(amount: str) -> int:
    return int(Decimal(amount) * 100)


def day(n: int) -> dt.date:
    return dt.datetime.now(dt.UTC).date() + dt.timedelta(days=n)


async def contract_under_review(loop: Loop, name: str, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A funded contract whose notice deadline is 10 days away (its review starts at once), and its task."""
    start, end = day(-320), day(40)
    nxt = end + dt.timedelta(days=1)
    await loop.fund({start.year, nxt.year}, {f"{start:%Y-%m}", f"{nxt:%Y-%m}"})
    tool = await make_tool(loop.c["registry"], name)
    body = {
        "tool_id": tool["id"],
        "start": start.isoformat(),
        "end": end.isoformat(),
        "billing_period": "annual",
        "cost": "12000.00",
        "currency": "EUR",
        "seats": 50,
        "auto_renew": True,
        "notice_days": 30,
        "budget_line_code": "MARTECH",
        **extra,
    }
    contract = await loop.ok("registry", "POST", "/v1/contracts", 201, json=body)
    await eventually(lambda: loop.commitment(f"contract:{contract['id']}:1"), timeout=20)
    task = await eventually(lambda: loop.review_task(contract["id"]), timeout=20)
    return contract, task


async def test_renew_starts_the_next_term_and_budget_commits_it(new_db, own_nats):
    async with loop_of(new_db, own_nats) as loop:
        contract, task = await contract_under_review(loop, "Renewed CRM")
        await loop.ok("workflow", "POST", f"/v1/tasks/{task['id']}/approve", json={}, headers=MOPS_REVIEWER)
        ref = f"contract:{contract['id']}:2"
        row = await eventually(lambda: loop.commitment(ref), timeout=20)
        assert row.status == "committed"
        detail = await loop.ok("registry", "GET", f"/v1/contracts/{contract['id']}")
        assert detail["term"] == 2 and detail["start"] == day(41).isoformat()
        assert row.amount_minor == minor(detail["terms"][1]["commit_amount"])
        assert [t["outcome"] for t in detail["terms"]] == ["renewed", "current"]
        [decision] = await loop.decisions(contract["id"])
        assert decision["outcome"] == "renew" and decision["status"] == "applied" and decision["next_term"] == 2
        assert decision["late"] is False and decision["term"] == 1 and decision["actor"] == "service:workflow"


async def test_cancel_gives_notice_before_the_deadline_and_nothing_renews(new_db, own_nats):
    async with loop_of(new_db, own_nats) as loop:
        contract, task = await contract_under_review(loop, "Cancelled CRM")
        await loop.ok(
            "workflow", "POST", f"/v1/tasks/{task['id']}/reject", json={"comment": "too pricey"}, headers=MOPS_REVIEWER
        )
        [decision] = await eventually(lambda: loop.decisions(contract["id"]), timeout=20)
        assert decision["outcome"] == "cancel" and decision["status"] == "applied" and not decision["late"]
        assert "notice given" in decision["effect"]
        detail = await loop.ok("registry", "GET", f"/v1/contracts/{contract['id']}")
        assert detail["notice_given_at"] and detail["auto_renew"] is False and detail["status"] == "active"
        assert detail["term"] == 1 and detail["renewal_due_at"] is None
        # The current term's commitment stays (it is being paid); no next term was committed.
        assert (await loop.commitment(f"contract:{contract['id']}:1")).status == "committed"
        assert await loop.commitment(f"contract:{contract['id']}:2") is None


async def test_cancel_releases_a_next_term_that_had_already_started(new_db, own_nats):
    async with loop_of(new_db, own_nats) as loop:
        contract, task = await contract_under_review(loop, "Early CRM")
        await loop.ok("registry", "POST", f"/v1/contracts/{contract['id']}/renew")  # renewed ahead of the review
        ref = f"contract:{contract['id']}:2"
        await eventually(lambda: loop.commitment(ref), timeout=20)
        await loop.ok("workflow", "POST", f"/v1/tasks/{task['id']}/reject", json={}, headers=MOPS_REVIEWER)

        async def released() -> bool:
            row = await loop.commitment(ref)
            return row.status == "released"

        await eventually(released, timeout=20)
        detail = await loop.ok("registry", "GET", f"/v1/contracts/{contract['id']}")
        assert detail["status"] == "cancelled" and detail["term"] == 2
        [decision] = await loop.decisions(contract["id"])
        assert decision["status"] == "applied" and "released" in decision["effect"]


async def test_renegotiate_waits_then_renews_on_the_new_terms(new_db, own_nats):
    async with loop_of(new_db, own_nats) as loop:
        contract, task = await contract_under_review(loop, "Renegotiated CRM")
        inst = await loop.ok(
            "workflow",
            "POST",
            f"/v1/tasks/{task['id']}/request-changes",
            json={"comment": "ask for 30 seats at 9000"},
            headers=MOPS_REVIEWER,
        )
        [decision] = await eventually(lambda: loop.decisions(contract["id"]), timeout=20)
        assert decision["outcome"] == "renegotiate" and decision["status"] == "waiting"
        assert (await loop.ok("registry", "GET", f"/v1/contracts/{contract['id']}"))["term"] == 1
        await loop.ok(
            "workflow",
            "POST",
            f"/v1/instances/{inst['id']}/resubmit",
            json={"context": {"renewal": {"cost": "9000.00", "seats": 30}}},
        )

        async def got_terms() -> list:
            items = await loop.decisions(contract["id"])
            return items if items[0]["new_terms"] else []

        [decision] = await eventually(got_terms, timeout=20)
        assert decision["status"] == "waiting" and decision["new_terms"] == {"cost": "9000.00", "seats": 30}
        task = await eventually(lambda: loop.review_task(contract["id"]), timeout=20)
        await loop.ok("workflow", "POST", f"/v1/tasks/{task['id']}/approve", json={}, headers=MOPS_REVIEWER)
        row = await eventually(lambda: loop.commitment(f"contract:{contract['id']}:2"), timeout=20)
        detail = await loop.ok("registry", "GET", f"/v1/contracts/{contract['id']}")
        assert detail["term"] == 2 and detail["cost"] == "9000.00" and detail["seats"] == 30
        # Budget committed the renegotiated term's cost, not the old one's.
        assert row.status == "committed" and row.amount_minor == minor(detail["terms"][1]["commit_amount"])
        first = await loop.commitment(f"contract:{contract['id']}:1")
        assert minor(detail["terms"][1]["commit_amount"]) < first.amount_minor
        [decision] = await loop.decisions(contract["id"])
        assert decision["outcome"] == "renew" and "renegotiated" in decision["effect"]


async def auto_renewed_meanwhile(loop: Loop, contract: dict[str, Any]) -> None:
    """The notice deadline passes unanswered: move the term so its deadline was yesterday and let the
    auto-renewal timer fire now (what the scheduler does the day after the deadline)."""
    rt = loop.apps["registry"].state.runtime
    async with rt.transaction() as s:
        for row in (await s.get(Contract, contract["id"]), await s.get(ContractTerm, (contract["id"], 1))):
            row.end = day(29)  # notice deadline = yesterday
    t = rt.infra.timers
    async with rt.transaction() as s:
        await s.execute(
            t.update()
            .where(t.c.subject_id == contract["id"], t.c.kind == "auto_renewal")
            .values(due_at=dt.datetime.now(dt.UTC))
        )
    await eventually(lambda: loop.commitment(f"contract:{contract['id']}:2"), timeout=20)
    auto = await loop.decisions(contract["id"])
    assert [d["outcome"] for d in auto] == ["auto_renewed"] and auto[0]["next_term"] == 2


async def late_decision(loop: Loop, contract: dict[str, Any], outcome: str) -> dict[str, Any]:
    async def two() -> list:
        items = await loop.decisions(contract["id"])
        return items if len(items) == 2 else []

    return [d for d in await eventually(two, timeout=20) if d["outcome"] == outcome][0]


async def test_a_late_cancel_is_reported_with_the_auto_renewal_that_happened(new_db, own_nats):
    async with loop_of(new_db, own_nats) as loop:
        contract, task = await contract_under_review(loop, "Late CRM")
        await auto_renewed_meanwhile(loop, contract)
        await loop.ok("workflow", "POST", f"/v1/tasks/{task['id']}/reject", json={}, headers=MOPS_REVIEWER)
        late = await late_decision(loop, contract, "cancel")
        assert late["late"] is True and late["status"] == "no_effect" and late["auto_renewed_term"] == 2
        assert "after the notice deadline" in late["effect"]
        page = await loop.ok("registry", "GET", "/v1/renewals/decisions", params={"late": "true"})
        assert [d["id"] for d in page["items"]] == [late["id"]]
        detail = await loop.ok("registry", "GET", f"/v1/contracts/{contract['id']}")
        assert detail["term"] == 2 and detail["status"] == "active"
        assert (await loop.commitment(f"contract:{contract['id']}:2")).status == "committed"


async def test_a_late_renew_is_reported_and_does_not_renew_twice(new_db, own_nats):
    async with loop_of(new_db, own_nats) as loop:
        contract, task = await contract_under_review(loop, "Late Renewed CRM")
        await auto_renewed_meanwhile(loop, contract)
        await loop.ok("workflow", "POST", f"/v1/tasks/{task['id']}/approve", json={}, headers=MOPS_REVIEWER)
        late = await late_decision(loop, contract, "renew")
        assert late["late"] is True and late["status"] == "no_effect" and late["auto_renewed_term"] == 2
        assert late["next_term"] is None and "term 2 had already started" in late["effect"]
        detail = await loop.ok("registry", "GET", f"/v1/contracts/{contract['id']}")
        assert detail["term"] == 2 and [t["outcome"] for t in detail["terms"]] == ["renewed", "current"]
        assert (await loop.commitment(f"contract:{contract['id']}:2")).status == "committed"
        assert await loop.commitment(f"contract:{contract['id']}:3") is None  # budget committed no third term


async def test_events_of_other_subjects_change_nothing_and_bad_ones_are_refused(api, app):
    handlers = app.state.runtime.consumer.handlers
    kinds = ("approved", "rejected", "changes_requested", "resubmitted", "cancelled")
    answers = {f"budget.commitment.{k}" for k in ("committed", "requested", "released", "refused")}
    assert set(handlers) == {*(f"workflow.instance.{k}" for k in kinds), "budget.actual.posted", *answers}
    other = {"instance_id": "i-1", "subject": {"type": "commitment", "id": "c-1", "service": "budget"}, "surprise": 1}
    env = Envelope(type="workflow.instance.approved", source="workflow", subject_id="i-1", data=other)
    async with app.state.runtime.unit_of_work() as uow:
        await handlers["workflow.instance.approved"](uow, env)
    assert (await api.get("/v1/renewals/decisions")).json()["items"] == []
    for data, field in (
        ({"subject": {}}, "data.instance_id"),
        (
            {"instance_id": "i-2", "subject": {"type": "contract", "id": "ghost", "service": "registry"}},
            "data.subject.id",
        ),
    ):
        bad = Envelope(type="workflow.instance.approved", source="workflow", subject_id="i-2", data=data)
        with pytest.raises(Invalid) as caught:
            async with app.state.runtime.unit_of_work() as uow:
                await handlers["workflow.instance.approved"](uow, bad)
        assert caught.value.errors[0].field == field
