"""Scopes on every workflow write path, against the instance's context as it is and as it will be.

An instance's context is its row: a principal narrowed to `region:NA` may not decide, cancel or
rework an EMEA request, even where the definition's stage does not narrow its seats by region;
definitions, calendars and request types apply to every region and need a principal no scope
narrows. (Requests, whose data is their instance's context: tests/workflow/test_requests.py.)
"""

from __future__ import annotations

import pytest

from tests.workflow.conftest import ADMIN, APPROVER_ALL, APPROVER_EMEA, MARKETER, who

pytestmark = pytest.mark.db

NA_APPROVER = who("nadia", "approver", scopes=("region:NA",))
NA_MOPS = who("nico", "mops", scopes=("region:NA",))
EMEA_MOPS = who("emma", "mops", scopes=("region:EMEA",))


async def unscoped_definition(wf) -> None:
    """A stage whose seats are the approver role, not narrowed by the context's region."""
    await wf.ok(
        "POST",
        "/v1/definitions",
        ADMIN,
        {
            "key": "open-review",
            "name": "Open review",
            "stages": [{"name": "Review", "assignees": {"roles": ["approver"]}}],
        },
        status=201,
    )


async def snapshot(wf, inst_id: str) -> dict:
    return await wf.ok("GET", f"/v1/instances/{inst_id}", ADMIN)


@pytest.mark.parametrize("decision", ["approve", "reject", "request-changes"])
async def test_an_approver_scoped_elsewhere_cannot_decide_even_on_an_unscoped_stage(wf, decision):
    await unscoped_definition(wf)
    inst = await wf.start("open-review")
    before = await snapshot(wf, inst["id"])
    r = await wf.call("POST", f"/v1/tasks/{inst['tasks'][0]['id']}/{decision}", NA_APPROVER, {})
    assert r.status_code == 403 and "scope" in r.json()["detail"], r.text
    assert await snapshot(wf, inst["id"]) == before
    # In scope, and unscoped, the same decision works.
    ok = await wf.call("POST", f"/v1/tasks/{inst['tasks'][0]['id']}/{decision}", APPROVER_EMEA, {})
    assert ok.status_code == 200, ok.text


async def test_delegating_an_out_of_scope_task_is_refused(wf):
    await unscoped_definition(wf)
    inst = await wf.start("open-review")
    before = await snapshot(wf, inst["id"])
    r = await wf.call("POST", f"/v1/tasks/{inst['tasks'][0]['id']}/delegate", NA_APPROVER, {"to_user": "zed"})
    assert r.status_code == 403, r.text
    assert await snapshot(wf, inst["id"]) == before


async def test_cancelling_an_out_of_scope_request_is_refused_and_in_scope_works(wf):
    await unscoped_definition(wf)
    inst = await wf.start("open-review")
    before = await snapshot(wf, inst["id"])
    r = await wf.call("POST", f"/v1/instances/{inst['id']}/cancel", NA_MOPS, {})
    assert r.status_code == 403 and "scope" in r.json()["detail"], r.text
    assert await snapshot(wf, inst["id"]) == before
    assert (await wf.ok("POST", f"/v1/instances/{inst['id']}/cancel", EMEA_MOPS, {}))["status"] == "cancelled"


async def test_a_resubmission_cannot_move_a_request_out_of_scope(wf):
    await unscoped_definition(wf)
    inst = await wf.start("open-review")
    await wf.ok("POST", f"/v1/tasks/{inst['tasks'][0]['id']}/request-changes", APPROVER_ALL, {"comment": "why?"})
    before = await snapshot(wf, inst["id"])
    r = await wf.call("POST", f"/v1/instances/{inst['id']}/resubmit", MARKETER, {"context": {"region": "APAC"}})
    assert r.status_code == 403 and "scope" in r.json()["detail"], r.text
    assert await snapshot(wf, inst["id"]) == before
    ok = await wf.ok("POST", f"/v1/instances/{inst['id']}/resubmit", MARKETER, {"context": {"amount": "9.00"}})
    assert ok["status"] == "running" and ok["context"]["amount"] == "9.00"


async def test_starting_a_request_outside_ones_scope_or_without_its_dimension_is_refused(wf):
    await unscoped_definition(wf)
    for context in ({"region": "NA"}, {"amount": "1.00"}, {"region": None}):
        r = await wf.call(
            "POST",
            "/v1/instances",
            MARKETER,
            {
                "definition_key": "open-review",
                "subject": {"type": "x", "id": "1", "service": "budget"},
                "context": context,
            },
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "context", (context, r.text)
    assert (await wf.ok("GET", "/v1/instances", ADMIN))["items"] == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/definitions", {"key": "d", "name": "d", "stages": [{"name": "s", "assignees": {"roles": ["approver"]}}]}),
        ("/v1/calendars", {"key": "c", "timezone": "UTC", "hours": {"mon": ["09:00", "17:00"]}}),
        (
            "/v1/request-types",
            {"key": "t", "name": "t", "form": {"type": "object"}, "definition_key": "campaign-brief-review"},
        ),
    ],
)
async def test_definitions_and_calendars_need_a_principal_no_scope_narrows(wf, path, body):
    r = await wf.call("POST", path, EMEA_MOPS, body)
    assert r.status_code == 403 and "scope" in r.json()["detail"], r.text
    assert (await wf.call("POST", path, who("mo", "mops"), body)).status_code == 201
