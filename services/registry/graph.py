"""The integration graph: read it (bounded), draw it (Mermaid), and analyse it off the event loop.

The graph is the tools that are not retired and the integrations between them that are not
retired. One request reads at most `Limits.max_tools` tools and `Limits.max_integrations`
integrations (a 422 beyond them), in partitions, so the event loop is never held long; the
analysis (orphans, islands, single points of failure) runs in a worker thread, stopped at a
deadline or when the caller leaves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
from sqlalchemy import select

from services.registry import integrations, layers, schemas, stack_schemas
from services.registry.models import Integration, Tool
from services.registry.reads import at_most
from shared.uow import UnitOfWork
from shared.work import Budget, Disconnectable, run_bounded

CHECK_EVERY = 5_000  # articulation points found between two looks at the budget
HINT = "retire what is no longer used, or raise the limit (docs/registry.md)"


@dataclass(frozen=True)
class Limits:
    """How big a stack the graph and its analysis read, and how long the analysis may run."""

    max_tools: int = 20_000
    max_integrations: int = 100_000
    seconds: float = 20.0


@dataclass(frozen=True)
class Flows:
    """What the analysis computes on: live tools (id, name, team, person, lifecycle, layer, in name
    order), the live integrations between them (id, from, to, direction, status) and the layer rules."""

    tools: Sequence[Any]
    edges: Sequence[Any]
    rules: Sequence[Any] = ()


async def _live(
    uow: UnitOfWork, limits: Limits, tool_columns: Sequence[Any], edge_columns: Sequence[Any]
) -> tuple[list[Any], list[Any]]:
    """Tools that are not retired (by name) and the integrations between them that are not retired
    (oldest first), with the columns asked for (`id`, and `from_tool_id` and `to_tool_id`, among them)."""
    tools = await at_most(
        uow,
        select(*tool_columns).where(Tool.lifecycle != "retired").order_by(Tool.name),
        limits.max_tools,
        "tools that are not retired",
        HINT,
    )
    live = {t.id for t in tools}
    edges = await at_most(
        uow,
        select(*edge_columns).where(Integration.status != "retired").order_by(Integration.created_at, Integration.id),
        limits.max_integrations,
        "integrations that are not retired",
        HINT,
    )
    return tools, [e for e in edges if e.from_tool_id in live and e.to_tool_id in live]


async def graph(uow: UnitOfWork, *, limits: Limits) -> stack_schemas.Graph:
    tools, edges = await _live(
        uow,
        limits,
        (Tool.id, Tool.name, Tool.category, Tool.lifecycle, Tool.owner_team, Tool.owner_person),
        tuple(Integration.__table__.c),
    )
    nodes = [
        stack_schemas.GraphNode(
            id=t.id,
            name=t.name,
            category=t.category,
            lifecycle=t.lifecycle,
            owner=schemas.OwnerOut(team=t.owner_team, person=t.owner_person),
        )
        for t in tools
    ]
    return stack_schemas.Graph(nodes=nodes, edges=[integrations.record(e) for e in edges])


async def flowchart(uow: UnitOfWork, *, limits: Limits) -> str:
    """The graph as Mermaid, from only the columns the chart shows."""
    i = Integration
    tools, edges = await _live(
        uow,
        limits,
        (Tool.id, Tool.name),
        (i.from_tool_id, i.to_tool_id, i.direction, i.status, i.data_objects, i.method),
    )
    return mermaid(tools, edges)


def mermaid(tools: Sequence[Any], edges: Sequence[Any]) -> str:
    """A Mermaid flowchart of tools (`id`, `name`) and integrations between them (dotted arrows for
    those that are not active; labelled with their data objects, or their method)."""
    ids = {t.id: f"t{n}" for n, t in enumerate(tools)}
    lines = ["flowchart LR"]
    for t in tools:
        lines.append(f'    {ids[t.id]}["{_mermaid_text(t.name)}"]')
    for e in edges:
        two_way = e.direction == "two_way"
        if e.status != "active":
            arrow = "<-.->" if two_way else "-.->"
        else:
            arrow = "<-->" if two_way else "-->"
        label = ", ".join(e.data_objects) or e.method
        lines.append(f'    {ids[e.from_tool_id]} {arrow}|"{_mermaid_text(label)}"| {ids[e.to_tool_id]}')
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;").replace("\n", " ")


async def load_flows(uow: UnitOfWork, *, limits: Limits) -> Flows:
    """Only the columns the analysis needs (no JSON to decode), within the limits."""
    i = Integration
    tools, edges = await _live(
        uow,
        limits,
        (Tool.id, Tool.name, Tool.owner_team, Tool.owner_person, Tool.lifecycle, Tool.layer),
        (i.id, i.from_tool_id, i.to_tool_id, i.direction, i.status),
    )
    return Flows(tools, edges, (await layers.current(uow)).rules)


async def analysis(
    flows: Flows, *, limits: Limits, caller: Disconnectable | None = None, service: str = "registry"
) -> stack_schemas.Analysis:
    """`analyse` in a worker thread, stopped after `limits.seconds` (a 422) or when the caller leaves;
    call it after the read transaction has ended."""
    budget = Budget(limits.seconds, what="analysis", hint=HINT)
    return await run_bounded(analyse, flows, budget=budget, caller=caller, service=service)


def analyse(budget: Budget, flows: Flows) -> stack_schemas.Analysis:
    """Orphans (no owning team or person), islands (no integration), single points of failure
    (articulation points of the undirected graph of active integrations between active tools), and
    the flows that break a layer rule."""
    budget.charge(len(flows.tools) + len(flows.edges))
    edges = flows.edges
    orphans = [t.id for t in flows.tools if not t.owner_team and not t.owner_person]
    touched = {e.from_tool_id for e in edges} | {e.to_tool_id for e in edges}
    islands = [t.id for t in flows.tools if t.id not in touched]
    active = {t.id for t in flows.tools if t.lifecycle == "active"}
    spofs = single_points_of_failure(
        active, ((e.from_tool_id, e.to_tool_id) for e in edges if e.status == "active"), budget
    )
    name = {t.id: t.name for t in flows.tools}
    budget.check()
    return stack_schemas.Analysis(
        orphans=orphans,
        islands=islands,
        single_points_of_failure=sorted(spofs, key=lambda i: (name[i], i)),
        unlayered=[t.id for t in flows.tools if not getattr(t, "layer", None)] if flows.rules else [],
        violations=layers.violations(flows.rules, flows.tools, edges),
    )


def single_points_of_failure(
    nodes: Iterable[str], edges: Iterable[tuple[str, str]], budget: Budget | None = None
) -> set[str]:
    """Nodes whose removal splits a connected part of the data flow: the articulation points of the
    undirected graph (direction does not matter: a broken tool stops the flow either way)."""
    keep = set(nodes)
    flow: nx.Graph[str] = nx.Graph()
    flow.add_nodes_from(keep)
    flow.add_edges_from((a, b) for a, b in edges if a in keep and b in keep and a != b)
    found: set[str] = set()
    for point in nx.articulation_points(flow):
        found.add(point)
        if budget is not None and len(found) % CHECK_EVERY == 0:
            budget.check()
    if budget is not None:
        budget.check()
    return found
