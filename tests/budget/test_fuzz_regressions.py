"""Cases `make fuzz` found: each answered a status its route does not declare before its fix."""

from __future__ import annotations

import pytest

from tests.budget.conftest import ADMIN, problem
from tests.budget.test_campaigns import _campaign

pytestmark = pytest.mark.db


@pytest.mark.parametrize("plan_id", ["", "nope"])
async def test_a_campaign_of_an_unknown_plan_is_a_422_naming_plan_id(budget, plan_id):
    """POST /v1/campaigns declares no 404: an unknown plan in the body is a bad field, as line_ids is."""
    plan = await budget.plan()
    r = await budget.c.post("/v1/campaigns", headers=ADMIN, json={**_campaign(plan), "plan_id": plan_id})
    assert [e["field"] for e in problem(r, 422)["errors"]] == ["plan_id"]
    assert (await budget.ok("GET", "/v1/campaigns"))["items"] == []
