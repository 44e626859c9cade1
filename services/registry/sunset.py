"""The sunset report: which tools to retire first, and what retiring each would take.

A candidate is a live tool (not retired) with a reason: it is `sunsetting`, TIME-classed `eliminate`
or `migrate`, underused or shelfware, or it shares a capability with a tool that stays (active and
classed neither `eliminate` nor `migrate`). Candidates are ranked by the annual cost at stake, most
first, then by utilization, lowest first; each lists the integrations that would need moving.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select

from services.registry import schemas, stack_schemas
from services.registry.costs import StackCosts
from services.registry.models import Integration, Tool
from services.registry.utilization import Usage
from shared.money import fmt
from shared.uow import UnitOfWork

LEAVING = ("eliminate", "migrate")


def stays(t: Any) -> bool:
    return bool(t.lifecycle == "active" and t.time_class not in LEAVING)


async def report(uow: UnitOfWork, *, costs: StackCosts, usage: Usage) -> stack_schemas.SunsetReport:
    tools = (
        await uow.execute(
            select(Tool.id, Tool.name, Tool.lifecycle, Tool.time_class, Tool.layer, Tool.capabilities)
            .where(Tool.lifecycle != "retired")
            .order_by(Tool.name)
        )
    ).all()
    ids = {t.id for t in tools}
    annual = await costs.annual_by_tool(uow, ids)
    used = await usage.of_tools(uow, ids)
    holders: dict[str, list[Any]] = defaultdict(list)
    for t in tools:
        for cap in t.capabilities:
            holders[cap].append(t)
    edges: dict[str, list[str]] = defaultdict(list)
    i = Integration
    for e in await uow.execute(select(i.id, i.from_tool_id, i.to_tool_id).where(i.status != "retired").order_by(i.id)):
        edges[e.from_tool_id].append(e.id)
        edges[e.to_tool_id].append(e.id)
    items = [item for t in tools if (item := _candidate(t, annual, used, holders, edges, costs.base)) is not None]
    items.sort(key=lambda s: (-annual.get(s.tool_id, 0), s.utilization is None, s.utilization or 0, s.name))
    total = sum(annual.get(s.tool_id, 0) for s in items)
    return stack_schemas.SunsetReport(currency=costs.base, total_annual_cost=fmt(total, costs.base), items=items)


def _candidate(
    t: Any,
    annual: dict[str, int],
    used: dict[str, schemas.Utilization],
    holders: dict[str, list[Any]],
    edges: dict[str, list[str]],
    base: str,
) -> stack_schemas.SunsetItem | None:
    u = used.get(t.id)
    reasons: list[Any] = []
    if t.lifecycle == "sunsetting":
        reasons.append("sunsetting")
    if t.time_class in LEAVING:
        reasons.append(t.time_class)
    if u and u.shelfware:
        reasons.append("shelfware")
    elif u and u.underused:
        reasons.append("underused")
    shared = sorted(cap for cap in t.capabilities if any(o.id != t.id and stays(o) for o in holders[cap]))
    others = sorted({o.id for cap in shared for o in holders[cap] if o.id != t.id and stays(o)})
    if others and not stays(t):
        reasons.append("overlap")
    elif others and reasons:
        reasons.append("overlap")  # a tool that stays by its class, but is underused beside another
    if not reasons:
        return None
    return stack_schemas.SunsetItem(
        tool_id=t.id,
        name=t.name,
        lifecycle=t.lifecycle,
        time_class=t.time_class,
        layer=t.layer,
        annual_cost=fmt(annual.get(t.id, 0), base),
        utilization=u.utilization if u else None,
        active_users=u.active_users if u else None,
        seats=u.seats if u else None,
        reasons=reasons,
        overlaps_with=others,
        shared_capabilities=shared,
        integrations_to_move=edges.get(t.id, []),
    )
