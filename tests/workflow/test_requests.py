"""Request types (versioned intake forms) and requests: validated against the type's current form
with every bad field named, numbered without gaps or repeats under concurrency, started as an
instance of the type's definition, and seen only by those the instance would be seen by."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select

from services.workflow.intake_forms import REQUEST_TYPES
from services.workflow.models import instances, request_counters, requests
from tests.workflow.conftest import ADMIN, ANALYST, APPROVER_EMEA, APPROVER_US, MARKETER, MOPS, who

pytestmark = pytest.mark.db

EMEA_MOPS = who("emma", "mops", scopes=("region:EMEA",))
YEAR = dt.datetime.now(dt.UTC).year

# A valid filling of each shipped form, and a bad one with the fields a 422 must name.
SAMPLES = {
    "campaign-brief": (
        {
            "region": "EMEA",
            "objective": "Launch the spring range",
            "audience": "Returning customers",
            "channels": ["email", "paid_social"],
            "launch_date": "2027-03-01",
            "budget": "25000.00",
            "currency": "EUR",
        },
        {
            "region": "EMEA",
            "objective": "",
            "channels": ["email", "carrier_pigeon"],
            "launch_date": "first of March",
            "budget": 25000,
            "currency": "EUR",
            "colour": "red",
        },
        {
            "data.objective",
            "data.audience",
            "data.channels.1",
            "data.launch_date",
            "data.budget",
            "data.colour",
        },
    ),
    "creative-request": (
        {"region": "EMEA", "asset_type": "banner", "description": "Spring hero banner", "due_date": "2027-02-15"},
        {"region": "EMEA", "asset_type": "hologram", "sizes": "300x250", "due_date": "2027-02-30"},
        {"data.asset_type", "data.description", "data.sizes", "data.due_date"},
    ),
    "event-request": (
        {
            "region": "EMEA",
            "event_name": "Partner summit",
            "event_date": "2027-05-20",
            "format": "hybrid",
            "location": "Berlin",
            "expected_attendees": 250,
            "budget": "40000",
            "currency": "EUR",
        },
        {
            "region": "EMEA",
            "event_name": "Partner summit",
            "event_date": "2027-05-20",
            "format": "hybrid",
            "expected_attendees": 0,
            "budget": "40000.123",
            "currency": "eur",
        },
        {"data.expected_attendees", "data.budget", "data.currency"},
    ),
    "supplier-job": (
        {
            "region": "EMEA",
            "supplier": "Acme Print",
            "scope_of_work": "10,000 flyers",
            "estimated_cost": "1200.00",
            "currency": "EUR",
            "due_date": "2027-02-01",
        },
        {"supplier": "Acme Print", "scope_of_work": "10,000 flyers", "estimated_cost": "-5", "currency": "EUR"},
        {"data.region", "data.estimated_cost", "data.due_date"},
    ),
}


def fields(r) -> set[str]:
    assert r.status_code == 422, r.text
    return {e["field"] for e in r.json()["errors"]}


async def submit(wf, type_key: str, data: dict, as_=MARKETER, title: str = "A request"):
    return await wf.call("POST", "/v1/requests", as_, {"type_key": type_key, "title": title, "data": data})


async def count(wf, table) -> int:
    async with wf.runtime.transaction(readonly=True) as s:
        return int(await s.scalar(select(func.count()).select_from(table)))


def test_every_shipped_form_has_a_valid_and_an_invalid_sample():
    assert set(SAMPLES) == {t["key"] for t in REQUEST_TYPES}


@pytest.mark.parametrize("type_key", sorted(SAMPLES))
async def test_each_shipped_form_accepts_a_good_request_and_names_every_bad_field(wf, type_key):
    good, bad, named = SAMPLES[type_key]
    assert fields(await submit(wf, type_key, bad)) == named
    assert await count(wf, requests) == 0 and await count(wf, instances) == 0
    r = await submit(wf, type_key, good)
    assert r.status_code == 201, r.text
    req = r.json()
    assert req["number"] == f"REQ-{YEAR}-000001"
    assert (req["type_key"], req["type_version"], req["requester"]) == (type_key, 1, "mia")
    inst = req["instance"]
    assert inst["id"] == req["instance_id"] and inst["status"] == req["status"] == "running"
    assert inst["subject"] == {"type": "request", "id": req["id"], "service": "workflow"}
    assert inst["context"] == good
    assert inst["definition_key"] == next(t["definition_key"] for t in REQUEST_TYPES if t["key"] == type_key)
    assert inst["tasks"][0]["scope"] == {"region": "EMEA"} and inst["tasks"][0]["due_at"] is not None


async def test_a_request_moves_with_its_workflow_and_is_found_by_number(wf):
    req = (await submit(wf, "creative-request", SAMPLES["creative-request"][0])).json()
    task = req["instance"]["tasks"][0]["id"]
    await wf.ok("POST", f"/v1/tasks/{task}/approve", EMEA_MOPS, {})
    by_number = await wf.ok("GET", f"/v1/requests/{req['number']}", MARKETER)
    assert by_number["id"] == req["id"] and by_number["status"] == "approved"
    assert [h["action"] for h in by_number["instance"]["history"]][-1] == "finished"
    listed = await wf.ok("GET", "/v1/requests", MARKETER, params={"status": "approved"})
    assert [i["number"] for i in listed["items"]] == [req["number"]]
    assert (await wf.ok("GET", "/v1/requests", MARKETER, params={"status": "running"}))["items"] == []


async def test_submission_is_announced_before_its_instance_starts(wf):
    req = (await submit(wf, "campaign-brief", SAMPLES["campaign-brief"][0])).json()
    envelopes = await wf.events()
    subjects = [e["type"] for e in envelopes]
    assert subjects.index("workflow.request.submitted") < subjects.index("workflow.instance.started")
    data = next(e for e in envelopes if e["type"] == "workflow.request.submitted")["data"]
    assert data["number"] == req["number"] and data["instance_id"] == req["instance_id"]
    assert (data["type_key"], data["definition_key"]) == ("campaign-brief", "campaign-brief-review")
    assert data["data"] == SAMPLES["campaign-brief"][0]


async def test_concurrent_submissions_get_distinct_gapless_numbers(wf):
    good = SAMPLES["supplier-job"][0]
    answers = await asyncio.gather(*(submit(wf, "supplier-job", good, title=f"job {i}") for i in range(12)))
    assert [r.status_code for r in answers] == [201] * 12, [r.text for r in answers if r.status_code != 201]
    numbers = sorted(r.json()["number"] for r in answers)
    assert numbers == [f"REQ-{YEAR}-{n:06d}" for n in range(1, 13)]
    async with wf.runtime.transaction(readonly=True) as s:
        assert await s.scalar(select(request_counters.c.last).where(request_counters.c.year == YEAR)) == 12


async def test_a_refused_request_writes_nothing_and_uses_no_number(wf):
    good = SAMPLES["creative-request"][0]
    assert fields(await submit(wf, "no-such-type", good)) == {"type_key"}
    assert fields(await submit(wf, "creative-request", {**good, "region": "NA"})) == {"data"}  # outside mia's scope
    assert fields(await submit(wf, "creative-request", {k: v for k, v in good.items() if k != "region"})) == {
        "data.region"
    }
    for role in (APPROVER_EMEA, ANALYST, who("fin", "finance")):
        assert (await submit(wf, "creative-request", good, as_=role)).status_code == 403
    assert await count(wf, requests) == 0 and await count(wf, instances) == 0
    assert await wf.events() == []
    assert (await submit(wf, "creative-request", good)).json()["number"] == f"REQ-{YEAR}-000001"


async def test_requests_are_seen_within_scope_like_their_instances(wf):
    emea = (await submit(wf, "creative-request", SAMPLES["creative-request"][0])).json()
    na_marketer = who("ned", "marketer", scopes=("region:NA",))
    na = (await submit(wf, "creative-request", {**SAMPLES["creative-request"][0], "region": "NA"}, na_marketer)).json()
    for p, expected in (
        (MARKETER, {emea["id"]}),
        (na_marketer, {na["id"]}),
        (APPROVER_EMEA, {emea["id"]}),
        (APPROVER_US, {na["id"]}),
        (ANALYST, {emea["id"], na["id"]}),
        (MOPS, {emea["id"], na["id"]}),
    ):
        listed = await wf.ok("GET", "/v1/requests", p)
        assert {i["id"] for i in listed["items"]} == expected, p.subject
    for ref in (emea["id"], emea["number"]):
        r = await wf.call("GET", f"/v1/requests/{ref}", APPROVER_US)
        assert r.status_code == 404, r.text
        assert (await wf.ok("GET", f"/v1/requests/{ref}", APPROVER_EMEA))["id"] == emea["id"]
    assert (await wf.call("GET", "/v1/requests/REQ-1999-000001", ADMIN)).status_code == 404
    mine = await wf.ok("GET", "/v1/requests", ADMIN, params={"mine": "true"})
    assert mine["items"] == []


async def test_pages_of_requests_follow_the_cursor(wf):
    for i in range(5):
        await submit(wf, "creative-request", SAMPLES["creative-request"][0], title=f"r{i}")
    seen, cursor = [], None
    while True:
        page = await wf.ok(
            "GET", "/v1/requests", ANALYST, params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        seen += [i["title"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["r4", "r3", "r2", "r1", "r0"]


# --- request types ------------------------------------------------------------------------------------

SIMPLE_FORM = {
    "type": "object",
    "required": ["region", "what"],
    "properties": {"region": {"type": "string"}, "what": {"type": "string", "maxLength": 20}},
}


async def test_a_request_type_is_published_in_versions_and_requests_use_the_current_one(wf):
    body = {"key": "print-job", "name": "Print job", "form": SIMPLE_FORM, "definition_key": "creative-request-review"}
    v1 = await wf.ok("POST", "/v1/request-types", MOPS, body, status=201)
    assert (v1["version"], v1["created_by"]) == (1, "mo")
    first = (await submit(wf, "print-job", {"region": "EMEA", "what": "flyers"})).json()
    assert first["type_version"] == 1
    stricter = {
        **SIMPLE_FORM,
        "required": ["region", "what", "copies"],
        "properties": {**SIMPLE_FORM["properties"], "copies": {"type": "integer", "minimum": 1}},
    }
    v2 = await wf.ok("POST", "/v1/request-types", ADMIN, {**body, "form": stricter}, status=201)
    assert v2["version"] == 2
    assert (await wf.ok("GET", "/v1/request-types/print-job", ANALYST))["version"] == 2
    assert (await wf.ok("GET", "/v1/request-types/print-job", ANALYST, params={"version": 1}))["form"] == SIMPLE_FORM
    assert fields(await submit(wf, "print-job", {"region": "EMEA", "what": "flyers"})) == {"data.copies"}
    second = (await submit(wf, "print-job", {"region": "EMEA", "what": "flyers", "copies": 100})).json()
    assert second["type_version"] == 2
    # The request pinned the version it was validated against.
    assert (await wf.ok("GET", f"/v1/requests/{first['id']}", MARKETER))["type_version"] == 1
    assert (await wf.call("GET", "/v1/request-types/nope", ANALYST)).status_code == 404


async def test_a_bad_request_type_gets_every_reason_at_once(wf):
    form = {
        "type": "object",
        "properties": {
            "a": {"type": "nonsense"},
            "b": {"type": "string", "pattern": "(unclosed"},
            "c": {"minLength": -1},
        },
    }
    r = await wf.call(
        "POST", "/v1/request-types", ADMIN, {"key": "bad", "name": "Bad", "form": form, "definition_key": "nope"}
    )
    named = fields(r)
    assert {"form.properties.a.type", "form.properties.b.pattern", "form.properties.c.minLength"} <= named
    assert "definition_key" in named
    refs = {
        "type": "array",
        "items": {"$ref": "https://example.com/remote.json"},
        "$defs": {"x": {"$ref": "#/$defs/missing"}},
    }
    body = {"key": "refs", "name": "Refs", "form": refs, "definition_key": "campaign-brief-review"}
    assert fields(await wf.call("POST", "/v1/request-types", ADMIN, body)) == {
        "form.type",
        "form.items.$ref",
        "form.$defs.x.$ref",
    }
    assert (await wf.ok("GET", "/v1/request-types", ANALYST, params={"limit": 100}))["items"][0]["key"] == (
        "campaign-brief"
    )
    assert len((await wf.ok("GET", "/v1/request-types", ANALYST, params={"limit": 100}))["items"]) == 4


@pytest.mark.parametrize("p", [MARKETER, APPROVER_EMEA, ANALYST, EMEA_MOPS])
async def test_only_unscoped_mops_and_admins_publish_request_types(wf, p):
    body = {"key": "x", "name": "X", "form": SIMPLE_FORM, "definition_key": "campaign-brief-review"}
    assert (await wf.call("POST", "/v1/request-types", p, body)).status_code == 403
    assert (await wf.call("GET", "/v1/request-types/x", ADMIN)).status_code == 404
