"""The budget's answer on the contract, through a real NATS (registry, workflow and budget in process).

The issue's example: under `block`, a plan whose money is phased in March and a tool contract starting
in January on its line. The budget refuses the January commitment (budget.commitment.refused); the
registry shows the refusal on the contract, with the budget's reason and the refusal to retry. Once
January is funded and the refusal retried at the budget, budget.commitment.committed clears it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from services.registry import contracts
from tests.conftest import eventually
from tests.registry.conftest import make_tool
from tests.registry.test_reviews import Loop, loop_of, own_nats  # noqa: F401  (own_nats: the fixture)

pytestmark = pytest.mark.db


async def _plan_phased_in_march(loop: Loop) -> dict[str, Any]:
    body = {"name": "FY27", "fiscal_year": 2027, "currency": "EUR", "overspend_policy": "block"}
    plan = await loop.ok("budget", "POST", "/v1/plans", 201, json=body)
    await loop.ok("budget", "POST", f"/v1/plans/{plan['id']}/activate")
    line = await loop.ok(
        "budget", "POST", f"/v1/plans/{plan['id']}/lines", 201, json={"code": "MARTECH", "name": "Martech"}
    )
    money = {"line_id": line["id"], "period": "2027-03", "amount": "20000.00", "currency": "EUR"}
    await loop.ok("budget", "POST", "/v1/allocations", 201, json=money)
    return line


async def test_a_refused_commitment_shows_on_the_contract_until_a_retry_commits_it(new_db, own_nats):  # noqa: F811
    async with loop_of(new_db, own_nats) as loop:
        line = await _plan_phased_in_march(loop)
        tool = await make_tool(loop.c["registry"], "Acme CRM")
        body = {
            "tool_id": tool["id"],
            "start": "2027-01-15",
            "end": "2028-01-14",
            "billing_period": "annual",
            "cost": "12000.00",
            "currency": "EUR",
            "notice_days": 30,
            "budget_line_code": "MARTECH",
        }
        contract = await loop.ok("registry", "POST", "/v1/contracts", 201, json=body)
        assert contract["budget_status"] is None and contract["budget_refusal"] is None  # nothing heard yet
        url = f"/v1/contracts/{contract['id']}"

        async def status(wanted: str) -> dict[str, Any] | None:
            got = await loop.ok("registry", "GET", url)
            return got if got["budget_status"] == wanted else None

        refused = await eventually(lambda: status("refused"), timeout=20)
        [refusal] = (await loop.ok("budget", "GET", "/v1/refusals"))["items"]
        shown = refused["budget_refusal"]
        assert shown["refusal_id"] == refusal["id"] and shown["code"] == "conflict"
        assert shown["reason"] == refusal["reason"] and "short by" in shown["reason"]
        assert dt.datetime.fromisoformat(shown["refused_at"]).tzinfo is not None
        listed = await loop.ok("registry", "GET", "/v1/contracts")
        assert [c["budget_status"] for c in listed["items"] if c["id"] == contract["id"]] == ["refused"]

        january = {"line_id": line["id"], "period": "2027-01", "amount": "12000.00", "currency": "EUR"}
        await loop.ok("budget", "POST", "/v1/allocations", 201, json=january)
        done = await loop.ok("budget", "POST", f"/v1/refusals/{refusal['id']}/retry")
        assert done["status"] == "retried"
        committed = await eventually(lambda: status("committed"), timeout=20)
        assert committed["budget_refusal"] is None
        assert committed["version"] == contract["version"]  # the budget's word is not a change of the contract


async def test_the_budgets_word_on_another_contract_or_term_changes_nothing(new_db, own_nats):  # noqa: F811
    """A funded contract is committed; an event about an unknown contract or an old term is ignored."""
    async with loop_of(new_db, own_nats) as loop:
        await loop.fund({2027}, {"2027-02"})
        tool = await make_tool(loop.c["registry"], "Funded CRM")
        body = {
            "tool_id": tool["id"],
            "start": "2027-02-01",
            "end": "2028-01-31",
            "billing_period": "annual",
            "cost": "1200.00",
            "currency": "EUR",
            "budget_line_code": "MARTECH",
        }
        contract = await loop.ok("registry", "POST", "/v1/contracts", 201, json=body)
        url = f"/v1/contracts/{contract['id']}"

        async def committed() -> bool:
            return (await loop.ok("registry", "GET", url))["budget_status"] == "committed"

        await eventually(committed, timeout=20)
        rt = loop.apps["registry"].state.runtime
        async with rt.unit_of_work() as uow:
            later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
            for ref in (f"contract:{contract['id']}:2", "contract:nobody:1", "PO-77", None):
                assert not await contracts.budget_said(uow, external_ref=ref, status="refused", at=later)
            earlier = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # older than what the budget said last
            assert not await contracts.budget_said(
                uow, external_ref=f"contract:{contract['id']}:1", status="released", at=earlier
            )
        assert await committed()
