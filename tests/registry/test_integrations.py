"""Integrations change and retire with their history, carry health (status, last seen working, owner),
publish `registry.integration.broken` once per breakage; a tool's impact lists what depends on it."""

from __future__ import annotations

import pytest

from tests.harness import assert_problem, fields_of
from tests.registry.conftest import ANALYST, MOPS, PARTNER, make_contract, make_tool, outbox_rows, published
from tests.registry.test_graph import link

pytestmark = pytest.mark.db


async def test_patch_needs_the_version_keeps_history_and_refuses_bad_fields(api):
    a, b = await make_tool(api, "Ads"), await make_tool(api, "CRM")
    edge = await link(api, a, b, owner="sam")
    url = f"/v1/integrations/{edge['id']}"
    r = await api.get(url)
    assert r.status_code == 200 and r.headers["etag"] == '"1"' and r.json()["last_seen_working_at"]
    assert_problem(await api.patch(url, json={"owner": "kim"}), 428)
    r = await api.patch(url, json={"method": None, "status": "retired"}, headers={"If-Match": '"1"'})
    assert fields_of(assert_problem(r, 422)) == {"method", "status"}
    r = await api.patch(
        url,
        json={"owner": "kim", "data_objects": ["Leads", "spend"], "reason": "handover"},
        headers={**MOPS, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    assert r.json()["owner"] == "kim" and r.json()["data_objects"] == ["leads", "spend"] and r.json()["version"] == 2
    assert_problem(await api.patch(url, json={"owner": "x"}, headers={"If-Match": '"1"'}), 412)
    assert_problem(await api.patch(url, json={"owner": "x"}, headers={**ANALYST, "If-Match": '"2"'}), 403)
    trail = (await api.get(f"{url}/history")).json()["items"]
    assert [h["action"] for h in trail] == ["created", "updated"]
    assert trail[1]["actor"] == "maria" and trail[1]["reason"] == "handover"
    assert trail[1]["changes"] == {
        "owner": {"from": "sam", "to": "kim"},
        "data_objects": {"from": ["leads"], "to": ["leads", "spend"]},
    }
    assert_problem(await api.get("/v1/integrations/ghost"), 404)


async def test_retiring_removes_the_flow_from_the_graph_and_freezes_it(api):
    a, b, c = await make_tool(api, "A"), await make_tool(api, "B"), await make_tool(api, "C")
    ab, bc = await link(api, a, b), await link(api, b, c)
    assert set((await api.get("/v1/analysis")).json()["single_points_of_failure"]) == {b["id"]}
    r = await api.delete(f"/v1/integrations/{ab['id']}", params={"reason": "replaced"})
    assert r.status_code == 200 and r.json()["status"] == "retired"
    assert {e["id"] for e in (await api.get("/v1/graph")).json()["edges"]} == {bc["id"]}
    assert (await api.get("/v1/analysis")).json()["single_points_of_failure"] == []
    assert_problem(await api.delete(f"/v1/integrations/{ab['id']}"), 409)
    assert_problem(
        await api.patch(f"/v1/integrations/{ab['id']}", json={"owner": "x"}, headers={"If-Match": '"2"'}), 409
    )
    trail = (await api.get(f"/v1/integrations/{ab['id']}/history")).json()["items"]
    assert trail[-1]["action"] == "retired" and trail[-1]["reason"] == "replaced"
    assert [e["id"] for e in (await api.get("/v1/integrations", params={"status": "retired"})).json()["items"]] == [
        ab["id"]
    ]


async def test_health_reports_break_and_mend_the_flow_and_publish_broken_once(api, app, nats_url):
    a, b = await make_tool(api, "Shop"), await make_tool(api, "Mailer")
    edge = await link(api, a, b, owner="sam")
    url = f"/v1/integrations/{edge['id']}/health"
    seen = "2026-01-05T10:00:00+00:00"
    r = await api.post(url, json={"working": True, "at": seen}, headers=PARTNER)
    assert r.status_code == 200, r.text
    first_seen = r.json()["last_seen_working_at"]
    assert first_seen >= edge["last_seen_working_at"]  # an older report never moves it back
    r = await api.post(url, json={"working": False, "detail": "401 from the API"}, headers=PARTNER)
    assert r.json()["status"] == "broken" and r.json()["health_detail"] == "401 from the API"
    await api.post(url, json={"working": False, "detail": "still 401"}, headers=PARTNER)  # already broken: no event
    r = await api.post(url, json={"working": True}, headers=PARTNER)
    assert r.json()["status"] == "active" and r.json()["last_seen_working_at"] > first_seen
    assert_problem(await api.post(url, json={"working": True, "at": "2999-01-01T00:00:00Z"}), 422, "at")
    assert_problem(await api.post(url, json={"working": "maybe"}), 422, "working")
    assert_problem(await api.post(url, json={"working": False}, headers=ANALYST), 403)
    # A PATCH to broken publishes too.
    r = await api.patch(
        f"/v1/integrations/{edge['id']}",
        json={"status": "broken", "reason": "vendor outage"},
        headers={"If-Match": f'"{r.json()["version"]}"'},
    )
    assert r.status_code == 200, r.text
    rows = await outbox_rows(app, "registry.integration.broken", edge["id"])
    assert [row["data"]["detail"] for row in rows] == ["401 from the API", "vendor outage"]
    data = rows[0]["data"]
    assert data["owner"] == "sam" and data["from_tool_name"] == "Shop" and data["to_tool_name"] == "Mailer"
    assert data["previous_status"] == "active" and data["reported_by"] == "okta-sync"
    events = await published(nats_url, "registry.integration.broken", edge["id"])
    assert len(events) == 2
    actions = [h["action"] for h in (await api.get(f"/v1/integrations/{edge['id']}/history")).json()["items"]]
    assert actions == ["created", "health", "health", "health", "health", "updated"]


async def test_impact_lists_dependants_contracts_and_the_spofs_a_retirement_creates(api):
    # cdp -> crm -> mail -> bi, crm <-> ads (two-way), cdp -> bi; web -> cdp (web is upstream: not a dependant)
    names = ["CDP", "CRM", "Mail", "BI", "Ads", "Web", "Planned"]
    t = {n: await make_tool(api, n) for n in names}
    await link(api, t["CDP"], t["CRM"])
    await link(api, t["CRM"], t["Mail"])
    await link(api, t["Mail"], t["BI"])
    await link(api, t["CRM"], t["Ads"], direction="two_way")
    await link(api, t["CDP"], t["BI"])
    await link(api, t["Web"], t["CDP"])
    await link(api, t["CDP"], t["Planned"], status="planned")  # not a flow yet
    contract = await make_contract(api, t["Mail"]["id"])
    await make_contract(api, t["Web"]["id"])  # upstream: not involved
    r = await api.get(f"/v1/tools/{t['CRM']['id']}/impact", headers=ANALYST)
    assert r.status_code == 200, r.text
    body = r.json()
    deps = {d["name"]: (d["depth"], d["via"]) for d in body["dependants"]}
    assert deps == {
        "Mail": (1, t["CRM"]["id"]),
        "Ads": (1, t["CRM"]["id"]),
        "BI": (2, t["Mail"]["id"]),
    }
    assert [c["contract_id"] for c in body["contracts"]] == [contract["id"]]
    assert len(body["integrations"]) == 3
    # Today CDP (Web hangs on it) and CRM (Ads) are single points of failure; without CRM the ring
    # CDP-CRM-Mail-BI opens into the path Web-CDP-BI-Mail, whose BI becomes one.
    assert body["new_single_points_of_failure"] == [t["BI"]["id"]]
    body = (await api.get(f"/v1/tools/{t['BI']['id']}/impact")).json()
    assert body["dependants"] == [] and body["new_single_points_of_failure"] == []
    body = (await api.get(f"/v1/tools/{t['CDP']['id']}/impact")).json()
    assert [(d["name"], d["depth"]) for d in body["dependants"]] == [("BI", 1), ("CRM", 1), ("Ads", 2), ("Mail", 2)]
    assert body["new_single_points_of_failure"] == [t["Mail"]["id"]]
    assert_problem(await api.get("/v1/tools/ghost/impact"), 404)


async def test_a_retirement_that_opens_a_ring_creates_single_points_of_failure(api):
    # a ring A-B-C-D-A: no articulation point; retiring A leaves the path B-C-D, whose middle C is one.
    t = {n: await make_tool(api, n) for n in "ABCD"}
    for x, y in ("AB", "BC", "CD", "DA"):
        await link(api, t[x], t[y])
    assert (await api.get("/v1/analysis")).json()["single_points_of_failure"] == []
    body = (await api.get(f"/v1/tools/{t['A']['id']}/impact")).json()
    assert body["new_single_points_of_failure"] == [t["C"]["id"]]
    assert [d["name"] for d in body["dependants"]] == ["B", "C", "D"]
    assert [d["depth"] for d in body["dependants"]] == [1, 2, 3]
