"""The registry's boundaries are typed: every answer documented, its events served as AsyncAPI, and its
plain JSON creates still on the fast lane."""

from __future__ import annotations

import pytest

from services.registry import api, api_stack
from shared.fastlane import lane_for

pytestmark = pytest.mark.db


async def test_every_operation_documents_its_answer_and_its_problems(api):
    doc = (await api.get("/openapi.json")).json()
    operations = [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]
    # The registry's own routes: the operations routes every service shares are tested in tests/shared.
    ours = [
        (path, method, op)
        for path, method, op in operations
        if path.startswith("/v1/") and "operations" not in op.get("tags", [])
    ]
    assert len(ours) == 46
    for path, method, op in ours:
        responses = op["responses"]
        ok = [status for status in responses if status.startswith("2")]
        assert len(ok) == 1, (path, method)
        content = responses[ok[0]]["content"]
        assert content and all(c.get("schema") for c in content.values()), (path, method, content)
        if "application/json" in content:
            assert "$ref" in content["application/json"]["schema"], (path, method)  # a model, not `{}`
        for status in ("401", "403", "422", "500"):
            assert "application/problem+json" in responses[status]["content"], (path, method, status)
    by_path = {(path, method): op for path, method, op in ours}
    assert set(by_path["/v1/export", "get"]["responses"]["200"]["content"]) == {"application/yaml", "text/csv"}
    assert set(by_path["/v1/graph", "get"]["responses"]["200"]["content"]) == {"application/json", "text/plain"}
    assert set(by_path["/v1/import", "post"]["requestBody"]["content"]) == {"application/yaml", "text/csv"}
    assert {"404", "409", "412", "428"} <= set(by_path["/v1/tools/{tool_id}", "patch"]["responses"])
    items = doc["components"]["schemas"]["Page_ToolOut_"]["properties"]
    assert set(items) == {"items", "next_cursor"}


async def test_the_service_serves_its_part_of_the_asyncapi_document(api):
    part = (await api.get("/asyncapi.json")).json()
    assert part["service"] == "registry"
    assert {c["subject"] for c in part["consumes"]} >= {"workflow.instance.approved", "workflow.instance.rejected"}
    assert "registry.renewal.due" in part["channels"]
    data = part["components"]["schemas"]["RegistryContractTerm"]
    assert {"commit_amount", "budget_line_code", "fiscal_year", "period", "external_ref"} <= set(data["required"])


def test_the_plain_json_creates_take_the_fast_lane():
    lanes = {route.path for route in [*api.router.routes, *api_stack.router.routes] if lane_for(route) is not None}
    assert lanes == {"/v1/tools", "/v1/contracts", "/v1/utilization", "/v1/integrations"}
