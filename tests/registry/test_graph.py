"""Integrations, the graph (JSON and Mermaid) and its analysis on graphs with known answers."""

from __future__ import annotations

import pytest

from tests.harness import assert_problem, fields_of
from tests.registry.conftest import ANALYST, make_tool


async def link(c, a, b, **extra):
    r = await c.post(
        "/v1/integrations",
        json={"from_tool_id": a["id"], "to_tool_id": b["id"], "method": "api", "data_objects": ["leads"], **extra},
    )
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.db
async def test_analysis_through_the_api(api):
    # ads -> crm -> cdp -> bi, crm <-> mail; an unowned island; a sunsetting tool that is not a SPOF;
    # a planned integration that does not count.
    ads = await make_tool(api, "Ads")
    crm = await make_tool(api, "CRM")
    cdp = await make_tool(api, "CDP")
    bi = await make_tool(api, "BI")
    mail = await make_tool(api, "Mailer")
    lonely = await make_tool(api, "Lonely", owner=None)
    old = await make_tool(api, "Old Sync")
    await api.post(f"/v1/tools/{old['id']}/lifecycle", json={"lifecycle": "sunsetting"})
    await link(api, ads, crm, data_objects=["leads", "spend"])
    await link(api, crm, cdp, direction="two_way", data_objects=["contacts"])
    await link(api, cdp, bi, method="file")
    await link(api, crm, mail, direction="two_way")
    await link(api, ads, old)
    await link(api, old, bi)
    await link(api, mail, bi, status="planned")
    body = (await api.get("/v1/analysis", headers=ANALYST)).json()
    assert body["orphans"] == [lonely["id"]]
    assert body["islands"] == [lonely["id"]]
    assert set(body["single_points_of_failure"]) == {crm["id"], cdp["id"]}

    r = await api.get("/v1/graph", params={"format": "mermaid"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert text.startswith("flowchart LR\n") and '["CRM"]' in text and '|"leads, spend"|' in text
    assert "<-->" in text and "-.->" in text  # two-way, and the planned (dotted) flow
    graph = (await api.get("/v1/graph")).json()
    assert len(graph["nodes"]) == 7 and len(graph["edges"]) == 7


@pytest.mark.db
async def test_bad_integrations_are_422_and_write_nothing(api):
    a = await make_tool(api, "A")
    r = await api.post("/v1/integrations", json={"from_tool_id": a["id"], "to_tool_id": a["id"], "method": "api"})
    assert fields_of(assert_problem(r, 422)) == {"to_tool_id"}
    r = await api.post("/v1/integrations", json={"from_tool_id": a["id"], "to_tool_id": "ghost", "method": "fax"})
    assert fields_of(assert_problem(r, 422)) == {"method"}
    r = await api.post("/v1/integrations", json={"from_tool_id": a["id"], "to_tool_id": "ghost", "method": "api"})
    assert fields_of(assert_problem(r, 422)) == {"to_tool_id"}
    r = await api.post(
        "/v1/integrations", headers=ANALYST, json={"from_tool_id": a["id"], "to_tool_id": "x", "method": "api"}
    )
    assert_problem(r, 403)
    assert (await api.get("/v1/integrations")).json()["items"] == []
