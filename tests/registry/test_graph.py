"""Integrations, the graph (JSON and Mermaid) and its analysis on graphs with known answers."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.registry.graph import single_points_of_failure
from tests.registry.conftest import ANALYST, assert_problem, fields_of, make_tool

KNOWN = [
    # (edges, expected single points of failure)
    ([("a", "b"), ("b", "c"), ("c", "d")], {"b", "c"}),  # a path
    ([("x", "a"), ("x", "b"), ("x", "c")], {"x"}),  # a star
    ([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")], {"c"}),  # a triangle with a tail
    ([("a", "b"), ("b", "c"), ("c", "a"), ("d", "e"), ("e", "f"), ("f", "d"), ("c", "d")], {"c", "d"}),
    ([("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")], set()),  # a ring has none
    ([("a", "b")], set()),  # two tools, no middle
]


@pytest.mark.parametrize(("edges", "expected"), KNOWN)
def test_single_points_of_failure_on_known_graphs(edges, expected):
    nodes = {n for e in edges for n in e}
    assert single_points_of_failure(nodes, edges) == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=25))
def test_a_spof_is_exactly_a_tool_whose_removal_disconnects_others(edges):
    edges = [(str(a), str(b)) for a, b in edges]
    nodes = {str(i) for i in range(10)}
    g = nx.Graph()
    g.add_nodes_from(nodes)
    g.add_edges_from((a, b) for a, b in edges if a != b)
    brute = set()
    for n in nodes:
        h = g.copy()
        h.remove_node(n)
        if nx.number_connected_components(h) > nx.number_connected_components(g) and g.degree(n) > 0:
            brute.add(n)
    assert single_points_of_failure(nodes, edges) == brute


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
