"""Impact analysis: what depends on a tool, directly and transitively, the contracts involved, and the
single points of failure its retirement would create.

A flow from A to B makes B depend on A (B receives A's data); a two-way flow makes each depend on the
other. Flows that exist count (active and broken, not planned or retired), between tools that are not
retired. The graph is read within `graph.Limits` and walked off the event loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from services.registry import graph, integrations, stack_schemas
from services.registry.models import Contract, Integration, Tool
from services.registry.reads import at_most
from services.registry.terms import annual_minor, notice_deadline
from shared.errors import NotFound
from shared.money import fmt
from shared.uow import UnitOfWork
from shared.work import Budget, Disconnectable, run_bounded

LIVE_FLOWS = ("active", "broken")


@dataclass(frozen=True)
class Stack:
    """Live tools (id, name, lifecycle) and the flows between them (from, to, direction, status)."""

    tools: Sequence[Any]
    edges: Sequence[Any]


async def load(uow: UnitOfWork, *, limits: graph.Limits) -> Stack:
    tools = await at_most(
        uow,
        select(Tool.id, Tool.name, Tool.lifecycle).where(Tool.lifecycle != "retired"),
        limits.max_tools,
        "tools that are not retired",
        graph.HINT,
    )
    i = Integration
    edges = await at_most(
        uow,
        select(i.from_tool_id, i.to_tool_id, i.direction, i.status)
        .where(i.status.in_(LIVE_FLOWS))
        .order_by(i.created_at, i.id),
        limits.max_integrations,
        "live integrations",
        graph.HINT,
    )
    live = {t.id for t in tools}
    return Stack(tools, [e for e in edges if e.from_tool_id in live and e.to_tool_id in live])


def dependants(stack: Stack, tool_id: str) -> list[tuple[str, int, str]]:
    """(tool, depth, via) of every tool that depends on `tool_id`, breadth first: pure."""
    follows: dict[str, list[str]] = {}
    for e in stack.edges:
        follows.setdefault(e.from_tool_id, []).append(e.to_tool_id)
        if e.direction == "two_way":
            follows.setdefault(e.to_tool_id, []).append(e.from_tool_id)
    seen = {tool_id}
    out: list[tuple[str, int, str]] = []
    queue = deque([(tool_id, 0)])
    while queue:
        node, depth = queue.popleft()
        for nxt in follows.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                out.append((nxt, depth + 1, node))
                queue.append((nxt, depth + 1))
    return out


def new_spofs(budget: Budget, stack: Stack, tool_id: str) -> tuple[list[tuple[str, int, str]], list[str]]:
    """Dependants, and the active tools that become articulation points of the active flow once
    `tool_id` is gone (and are not already)."""
    budget.charge(len(stack.tools) + len(stack.edges))
    deps = dependants(stack, tool_id)
    active = {t.id for t in stack.tools if t.lifecycle == "active"}
    flows = [(e.from_tool_id, e.to_tool_id) for e in stack.edges if e.status == "active"]
    before = graph.single_points_of_failure(active, flows, budget)
    after = graph.single_points_of_failure(active - {tool_id}, flows, budget)
    return deps, sorted(after - before - {tool_id})


async def impact(
    uow_factory: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
    *,
    tool_id: str,
    limits: graph.Limits,
    caller: Disconnectable | None = None,
) -> stack_schemas.Impact:
    """The tool's impact: read in one transaction, computed after it ended, named in another read."""
    async with uow_factory() as uow:
        tool = await uow.get(Tool, tool_id)
        if tool is None:
            raise NotFound(f"No tool with id {tool_id!r}.")
        name = tool.name
        stack = await load(uow, limits=limits)
        own = (
            await uow.scalars(
                select(Integration)
                .where((Integration.from_tool_id == tool_id) | (Integration.to_tool_id == tool_id))
                .where(Integration.status != "retired")
                .order_by(Integration.created_at, Integration.id)
            )
        ).all()
        own_edges = [integrations.record(e) for e in own]
    budget = Budget(limits.seconds, what="impact analysis", hint=graph.HINT)
    deps, spofs = await run_bounded(new_spofs, stack, tool_id, budget=budget, caller=caller, service="registry")
    names = {t.id: t for t in stack.tools}
    async with uow_factory() as uow:
        contracts = await _contracts(uow, [tool_id, *(d for d, _, _ in deps)])
    return stack_schemas.Impact(
        tool_id=tool_id,
        name=name,
        dependants=[
            stack_schemas.ImpactedTool(
                tool_id=d, name=names[d].name, lifecycle=names[d].lifecycle, depth=depth, via=via
            )
            for d, depth, via in sorted(deps, key=lambda d: (d[1], names[d[0]].name, d[0]))
        ],
        integrations=own_edges,
        contracts=contracts,
        new_single_points_of_failure=spofs,
    )


async def _contracts(uow: UnitOfWork, tool_ids: list[str]) -> list[stack_schemas.ImpactContract]:
    out: list[stack_schemas.ImpactContract] = []
    for start in range(0, len(tool_ids), 500):
        chunk = tool_ids[start : start + 500]
        rows: list[Any] = list(
            await uow.execute(
                select(Contract, Tool.name)
                .join(Tool, Tool.id == Contract.tool_id)
                .where(Contract.status == "active", Contract.tool_id.in_(chunk))
            )
        )
        for row in rows:
            c, tool_name = row[0], row[1]
            out.append(
                stack_schemas.ImpactContract(
                    contract_id=c.id,
                    tool_id=c.tool_id,
                    tool_name=tool_name,
                    annual_cost=fmt(annual_minor(c.cost_minor, c.billing_period), c.currency),
                    currency=c.currency,
                    end=c.end,
                    notice_deadline=notice_deadline(c.end, c.notice_days),
                    auto_renew=c.auto_renew,
                )
            )
    order = {t: n for n, t in enumerate(tool_ids)}
    return sorted(out, key=lambda c: (order[c.tool_id], c.end, c.contract_id))
