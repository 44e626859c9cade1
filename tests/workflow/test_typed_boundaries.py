"""The workflow's boundaries are typed: every answer documented with its problems, every event it
publishes in its AsyncAPI part (validated on publish), and its plain JSON creates on the fast lane."""

from __future__ import annotations

import pytest

from services.workflow import api, api_deliverables, api_requests
from services.workflow.events import CATALOGUE
from shared.fastlane import lane_for
from tests.workflow.conftest import ADMIN

pytestmark = pytest.mark.db

PUBLISHED = {
    "workflow.instance.started",
    "workflow.instance.changes_requested",
    "workflow.instance.resubmitted",
    "workflow.instance.approved",
    "workflow.instance.rejected",
    "workflow.instance.cancelled",
    "workflow.task.assigned",
    "workflow.task.completed",
    "workflow.sla.warning",
    "workflow.sla.breached",
    "workflow.request.submitted",
    "workflow.request.commented",
    *(
        f"workflow.deliverable.{verb}"
        for verb in (
            "created",
            "accepted",
            "started",
            "delivered",
            "review_started",
            "approved",
            "sent_back",
            "cancelled",
            "sla_warning",
            "sla_breached",
        )
    ),
}


async def test_every_operation_documents_its_answer_and_its_problems(wf):
    doc = await wf.ok("GET", "/openapi.json", ADMIN)
    ours = [
        (path, method, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if path.startswith("/v1/") and "operations" not in op.get("tags", [])
    ]
    assert len(ours) == 52
    downloads = {
        ("/v1/requests/{ref}/attachments/{attachment_id}", "get"),
        ("/v1/deliverables/{deliverable_id}/attachments/{attachment_id}", "get"),
    }
    for path, method, op in ours:
        responses = op["responses"]
        ok = [status for status in responses if status.startswith("2")]
        assert len(ok) == 1, (path, method)
        if (path, method) in downloads:  # the file itself, never JSON
            assert responses["200"]["content"]["application/octet-stream"]["schema"]["format"] == "binary"
        else:
            assert "$ref" in responses[ok[0]]["content"]["application/json"]["schema"], (path, method)
        for status in ("401", "403", "422", "500"):
            assert "application/problem+json" in responses[status]["content"], (path, method, status)
    by_path = {(path, method): op for path, method, op in ours}
    assert {"404", "409", "412"} <= set(by_path["/v1/instances/{instance_id}/cancel", "post"]["responses"])
    assert {"404", "409"} <= set(by_path["/v1/tasks/{task_id}/approve", "post"]["responses"])
    report = doc["components"]["schemas"]["SlaReport"]["properties"]
    assert {"from", "to", "breaches_per_stage", "sla_attainment_pct"} <= set(report)


async def test_the_service_serves_its_part_of_the_asyncapi_document(wf):
    part = await wf.ok("GET", "/asyncapi.json", ADMIN)
    assert part["service"] == "workflow"
    assert set(part["channels"]) >= PUBLISHED
    assert {c["subject"] for c in part["consumes"]} == {
        "budget.commitment.requested",
        "budget.request.submitted",
        "budget.campaign.created",
        "registry.renewal.due",
    }
    finished = part["components"]["schemas"]["WorkflowInstanceFinished"]
    assert {"cycle_time_business_hours", "cycle_time_hours", "sla_met", "finished_at"} <= set(finished["required"])


def test_the_catalogue_lists_every_subject_the_service_publishes():
    assert {spec.subject for spec in CATALOGUE.publishes} == PUBLISHED


def test_publishing_a_field_the_catalogue_does_not_know_is_refused():
    spec = CATALOGUE.spec("workflow.instance.resubmitted")
    with pytest.raises(TypeError, match="no field"):
        spec.dump({"instance_id": "i", "surprise": 1})


def test_the_plain_json_creates_take_the_fast_lane():
    routes = [*api.router.routes, *api_requests.router.routes, *api_deliverables.router.routes]
    lanes = {route.path for route in routes if lane_for(route) is not None}
    assert lanes == {
        "/v1/calendars",
        "/v1/definitions",
        "/v1/instances",
        "/v1/request-types",
        "/v1/requests",
        "/v1/suppliers",
        "/v1/teams",
    }
