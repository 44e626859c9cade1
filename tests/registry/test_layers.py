"""Layers of the stack and their rules: configured with GET/PUT /v1/layers, checked by /v1/analysis
(on a generated stack of 2,000 tools too); the sunset report ranks what to retire first."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from services.registry import schemas, tools
from services.registry.models import Integration
from shared.db import utcnow
from tests.harness import assert_problem, fields_of, principal
from tests.registry.conftest import ANALYST, MOPS, days, make_contract, make_tool
from tests.registry.test_graph import link

pytestmark = pytest.mark.db

RULES = [
    {"kind": "only_through", "layer": "engagement", "through": "data"},
    {"kind": "forbid", "from_layer": "analytics", "to_layer": "engagement"},
]
LAYERS = [
    {"key": "data", "name": "Data"},
    {"key": "orchestration", "name": "Orchestration"},
    {"key": "engagement", "name": "Engagement"},
    {"key": "analytics", "name": "Analytics"},
]


async def test_the_default_layers_and_a_tool_placed_in_one(api):
    r = await api.get("/v1/layers", headers=ANALYST)
    assert r.status_code == 200 and r.headers["etag"] == '"0"'
    body = r.json()
    assert [layer["key"] for layer in body["layers"]] == ["data", "orchestration", "engagement", "analytics"]
    assert body["rules"][0]["kind"] == "only_through" and body["version"] == 0 and body["tools"] == {}
    r = await api.post("/v1/tools", json={"name": "X", "category": "data", "layer": "basement"})
    assert fields_of(assert_problem(r, 422)) == {"layer"}
    tool = await make_tool(api, "Mailer", layer="engagement")
    assert tool["layer"] == "engagement"
    r = await api.patch(f"/v1/tools/{tool['id']}", json={"layer": "attic"}, headers={"If-Match": '"1"'})
    assert fields_of(assert_problem(r, 422)) == {"layer"}
    r = await api.patch(f"/v1/tools/{tool['id']}", json={"layer": "data"}, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["layer"] == "data"
    trail = (await api.get(f"/v1/tools/{tool['id']}/history")).json()["items"]
    assert trail[-1]["changes"] == {"layer": {"from": "engagement", "to": "data"}}
    assert (await api.get("/v1/layers")).json()["tools"] == {"data": 1}


async def test_put_layers_checks_the_document_and_keeps_layers_in_use(api):
    url = "/v1/layers"
    bad = {
        "layers": [*LAYERS, {"key": "data", "name": "Again"}],
        "rules": [{"kind": "forbid", "from_layer": "data", "to_layer": "attic"}],
    }
    assert fields_of(assert_problem(await api.put(url, json=bad), 422)) == {"layers[4].key", "rules[0].to_layer"}
    r = await api.put(url, json={"layers": [{"key": "Bad Key", "name": "x"}], "rules": [{"kind": "maybe"}]})
    assert_problem(r, 422)
    assert_problem(await api.put(url, json={"layers": LAYERS, "rules": RULES}, headers=ANALYST), 403)
    r = await api.put(url, json={"layers": LAYERS, "rules": RULES}, headers={**MOPS, "If-Match": '"0"'})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"1"' and r.json()["updated_by"] == "maria" and len(r.json()["rules"]) == 2
    assert_problem(await api.put(url, json={"layers": LAYERS, "rules": []}, headers={"If-Match": '"0"'}), 412)
    await make_tool(api, "Ads", layer="engagement")
    r = await api.put(url, json={"layers": LAYERS[:2], "rules": []})
    problem = assert_problem(r, 409)
    assert problem["layers_in_use"] == {"engagement": 1}
    assert len((await api.get(url)).json()["rules"]) == 2  # nothing changed


async def test_the_analysis_lists_every_flow_that_breaks_a_rule(api):
    await api.put("/v1/layers", json={"layers": LAYERS, "rules": RULES})
    mail = await make_tool(api, "Mail", layer="engagement")
    ads = await make_tool(api, "Ads", layer="engagement")
    cdp = await make_tool(api, "CDP", layer="data")
    crm = await make_tool(api, "CRM", layer="orchestration")
    bi = await make_tool(api, "BI", layer="analytics")
    loose = await make_tool(api, "Loose")
    ok = await link(api, cdp, mail)
    direct = await link(api, crm, mail)  # engagement with orchestration: rule 0
    both = await link(api, ads, bi, direction="two_way")  # rule 0, and analytics -> engagement: rule 1
    peer = await link(api, mail, ads)  # engagement with engagement: rule 0
    await link(api, loose, mail)  # a tool in no layer is not judged
    retired = await link(api, crm, ads)
    await api.delete(f"/v1/integrations/{retired['id']}")
    body = (await api.get("/v1/analysis")).json()
    found = sorted((v["integration_id"], v["rule"]) for v in body["violations"])
    assert found == sorted([(direct["id"], 0), (both["id"], 0), (both["id"], 1), (peer["id"], 0)])
    assert ok["id"] not in {v["integration_id"] for v in body["violations"]}
    assert body["unlayered"] == [loose["id"]]
    message = next(v["message"] for v in body["violations"] if v["rule"] == 1)
    assert message == "no data flows from analytics to engagement"


async def test_layer_rules_on_a_generated_stack_of_2000_tools(app, api):
    """2,000 tools across the four layers (a tenth in none) and 6,000 random flows: the analysis finds
    exactly the violations a plain recount finds, in bounded time (well inside its `analysis_seconds`
    deadline, past which it is a 422: tests/registry/test_analysis_bounds.py)."""
    await api.put("/v1/layers", json={"layers": LAYERS, "rules": RULES})
    rng = random.Random(22)
    keys = [layer["key"] for layer in LAYERS]
    bodies = [
        schemas.ToolIn(name=f"tool-{n:04d}", category="data", layer=None if n % 10 == 9 else keys[n % 4])
        for n in range(2000)
    ]
    rt = app.state.runtime
    async with rt.unit_of_work() as uow:
        made = await tools.create_tools(uow, principal("dana", "admin"), bodies=bodies)
        layer_of = {t.id: t.layer for t in made}
        ids = list(layer_of)
        now = utcnow()
        flows = []
        for _ in range(6000):
            a, b = rng.sample(ids, 2)
            flows.append(
                Integration(
                    id=str(uuid.uuid4()),
                    from_tool_id=a,
                    to_tool_id=b,
                    data_objects=[],
                    direction=rng.choice(["one_way", "two_way"]),
                    method="api",
                    status=rng.choice(["active", "active", "planned", "broken", "retired"]),
                    created_at=now,
                    version=1,
                )
            )
        uow.add_all(flows)
    expected = set()
    for e in flows:
        x, y = layer_of[e.from_tool_id], layer_of[e.to_tool_id]
        if e.status == "retired" or x is None or y is None:
            continue
        if (x == "engagement" and y != "data") or (y == "engagement" and x != "data"):
            expected.add((e.id, 0))
        if (x, y) == ("analytics", "engagement") or (
            e.direction == "two_way" and (y, x) == ("analytics", "engagement")
        ):
            expected.add((e.id, 1))
    started = time.monotonic()
    r = await api.get("/v1/analysis")
    took = time.monotonic() - started
    assert r.status_code == 200, r.text
    # 0.4 s on the shared 2-core machine; ten times that is a regression, not noise.
    assert took < 5.0, f"the analysis of 2,000 tools took {took:.1f} s"
    body = r.json()
    assert {(v["integration_id"], v["rule"]) for v in body["violations"]} == expected
    assert len(body["violations"]) == len(expected) > 1000
    assert len(body["unlayered"]) == 200


async def test_the_sunset_report_ranks_what_to_retire_first(api):
    keep = await make_tool(api, "Keeper", capabilities=["email", "crm"], time_class="invest")
    pilot = await make_tool(api, "Pilot Mail", capabilities=["email"], lifecycle="pilot")
    doomed = await make_tool(api, "Doomed", capabilities=["ads"], time_class="eliminate")
    fading = await make_tool(api, "Fading", lifecycle="evaluating")
    await api.post(f"/v1/tools/{fading['id']}/lifecycle", json={"lifecycle": "active"})
    await api.post(f"/v1/tools/{fading['id']}/lifecycle", json={"lifecycle": "sunsetting"})
    fine = await make_tool(api, "Fine", capabilities=["bi"])
    await make_contract(api, keep["id"], cost="30000.00")
    await make_contract(api, pilot["id"], cost="5000.00", seats=40)
    await make_contract(api, doomed["id"], cost="20000.00")
    await make_contract(api, fine["id"], cost="9000.00", seats=10)
    today = days(0)
    await api.post("/v1/utilization", json={"tool_id": pilot["id"], "date": today, "active_users": 4, "source": "sso"})
    await api.post("/v1/utilization", json={"tool_id": fine["id"], "date": today, "active_users": 9, "source": "sso"})
    edge = await link(api, pilot, keep)
    r = await api.get("/v1/reports/sunset", headers=ANALYST)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["name"] for i in body["items"]] == ["Doomed", "Pilot Mail", "Fading"]
    by_name = {i["name"]: i for i in body["items"]}
    assert by_name["Doomed"]["reasons"] == ["eliminate"] and by_name["Doomed"]["annual_cost"] == "20000.00"
    assert by_name["Pilot Mail"]["reasons"] == ["underused", "overlap"]
    assert by_name["Pilot Mail"]["overlaps_with"] == [keep["id"]] and by_name["Pilot Mail"]["utilization"] == 0.1
    assert by_name["Pilot Mail"]["integrations_to_move"] == [edge["id"]]
    assert by_name["Fading"]["reasons"] == ["sunsetting"] and by_name["Fading"]["annual_cost"] == "0.00"
    assert body["total_annual_cost"] == "25000.00" and body["currency"] == "EUR"
    await make_contract(api, fading["id"], cost="100.00", currency="USD")
    assert "missing_rates" in assert_problem(await api.get("/v1/reports/sunset"), 409)
