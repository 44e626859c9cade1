"""How the merged document names the services' schemas: what one service means by `PlanIn` never
overwrites another's, and a schema every service shares word for word is one schema (one class in a
generated client)."""

from __future__ import annotations

from gateway.merged import Part
from gateway.openapi import merge

PROBLEM = {
    "type": "object",
    "properties": {"errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldProblem"}}},
}
FIELD = {"type": "object", "properties": {"field": {"type": "string"}}}


def spec(plan_in: dict) -> dict:
    return {
        "paths": {
            "/v1/plans": {
                "post": {
                    "operationId": "create_plan",
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PlanIn"}}}
                    },
                    "responses": {
                        "422": {
                            "content": {
                                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                            }
                        }
                    },
                }
            }
        },
        "components": {"schemas": {"PlanIn": plan_in, "Problem": PROBLEM, "FieldProblem": FIELD}},
    }


def test_same_names_that_differ_are_prefixed_and_titled_and_identical_shared_ones_kept_once():
    own = {"paths": {}, "components": {"schemas": {"Problem": PROBLEM, "FieldProblem": FIELD}}}
    budget = spec({"type": "object", "properties": {"amount": {"type": "string"}}, "title": "PlanIn"})
    kpi = spec({"type": "object", "properties": {"metric": {"type": "string"}}, "title": "PlanIn"})
    doc = merge(own, [Part("budget", "ok", budget), Part("kpi", "ok", kpi)])
    schemas = doc["components"]["schemas"]
    assert set(schemas) == {"Problem", "FieldProblem", "Budget_PlanIn", "Kpi_PlanIn"}
    assert schemas["Budget_PlanIn"]["title"] == "Budget_PlanIn" and "amount" in schemas["Budget_PlanIn"]["properties"]
    assert "metric" in schemas["Kpi_PlanIn"]["properties"]
    op = doc["paths"]["/kpi/v1/plans"]["post"]
    assert op["operationId"] == "kpi_create_plan"
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Kpi_PlanIn"
    assert op["responses"]["422"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")


def test_a_shared_name_whose_parts_differ_is_prefixed_with_them():
    own = {"paths": {}, "components": {"schemas": {"Problem": PROBLEM, "FieldProblem": FIELD}}}
    odd = spec({"type": "object"})
    odd["components"]["schemas"]["FieldProblem"] = {"type": "object", "properties": {"path": {"type": "string"}}}
    doc = merge(own, [Part("registry", "ok", odd)])
    schemas = doc["components"]["schemas"]
    # Its Problem is word for word ours, but points at a FieldProblem that is not: both are its own.
    assert {"Registry_Problem", "Registry_FieldProblem"} <= set(schemas)
    ref = schemas["Registry_Problem"]["properties"]["errors"]["items"]["$ref"]
    assert ref == "#/components/schemas/Registry_FieldProblem"
