"""The graph's pure rules: single points of failure, the analysis and the Mermaid chart."""

from __future__ import annotations

from types import SimpleNamespace as Row

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.registry.graph import Flows, analyse, mermaid, single_points_of_failure
from shared.errors import TooMuchWork
from shared.work import Budget

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


def tool(id: str, lifecycle: str = "active", team: str | None = "mops", person: str | None = None) -> Row:
    return Row(id=id, name=id.upper(), owner_team=team, owner_person=person, lifecycle=lifecycle)


def edge(a: str, b: str, status: str = "active") -> Row:
    return Row(from_tool_id=a, to_tool_id=b, status=status)


def test_the_analysis_counts_only_active_flows_between_active_tools_for_spofs():
    # ads - crm - cdp (active), crm - old (sunsetting) - bi; a planned flow; an unowned island.
    flows = Flows(
        tools=[
            tool("ads"),
            tool("bi"),
            tool("cdp"),
            tool("crm"),
            tool("lonely", team=None),
            tool("old", lifecycle="sunsetting"),
            tool("owned", team=None, person="dana"),
        ],
        edges=[
            edge("ads", "crm"),
            edge("crm", "cdp"),
            edge("crm", "old"),
            edge("old", "bi"),
            edge("cdp", "bi", "planned"),
        ],
    )
    result = analyse(Budget(5), flows)
    assert result.orphans == ["lonely"]  # a person alone is an owner
    assert result.islands == ["lonely", "owned"]
    assert result.single_points_of_failure == ["crm"]  # old is not active: it splits nothing that counts


def test_an_analysis_past_its_deadline_stops_with_a_422():
    flows = Flows(tools=[tool(f"t{i}") for i in range(50)], edges=[edge(f"t{i}", f"t{i + 1}") for i in range(49)])
    with pytest.raises(TooMuchWork, match="longer than the limit"):
        analyse(Budget(0), flows)


def test_mermaid_draws_arrows_by_direction_and_status_and_escapes_labels():
    tools = [Row(id="a", name='Acme "CRM"'), Row(id="b", name="BI | reports")]
    edges = [
        Row(
            from_tool_id="a", to_tool_id="b", direction="one_way", status="active", data_objects=["leads"], method="api"
        ),
        Row(from_tool_id="b", to_tool_id="a", direction="two_way", status="active", data_objects=[], method="file"),
        Row(
            from_tool_id="a",
            to_tool_id="b",
            direction="two_way",
            status="planned",
            data_objects=["a", "b"],
            method="api",
        ),
        Row(
            from_tool_id="a", to_tool_id="b", direction="one_way", status="broken", data_objects=["x\ny"], method="api"
        ),
    ]
    assert mermaid(tools, edges) == (
        "flowchart LR\n"
        '    t0["Acme #quot;CRM#quot;"]\n'
        '    t1["BI #124; reports"]\n'
        '    t0 -->|"leads"| t1\n'
        '    t1 <-->|"file"| t0\n'
        '    t0 <-.->|"a, b"| t1\n'
        '    t0 -.->|"x y"| t1\n'
    )
