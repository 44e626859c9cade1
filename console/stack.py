"""Stack: the martech catalogue (filterable), renewals with notice deadlines, utilization, overlaps,
and the integration graph with orphans, islands and single points of failure marked."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from console.api import ApiProblem
from console.web import Page, signed_in

router = APIRouter()
LIFECYCLES = ("", "evaluating", "active", "deprecated", "retired")


async def _maybe(page: Page, path: str, **params: Any) -> Any:
    """A section's figures; None (the section is left out, nothing asked) when the policy does not let
    the person's roles read them; a part that is unavailable or refuses shows the problem."""
    if not page.may_read(path):
        return None
    try:
        return await page.api.get(path, **params)
    except ApiProblem as problem:
        return {"problem": problem}


def graph_data(graph: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
    """Nodes and edges for cytoscape, each node marked with what the analysis found."""
    spof, islands, orphans = (set(analysis.get(k, [])) for k in ("single_points_of_failure", "islands", "orphans"))
    nodes = [
        {
            "data": {
                "id": n["id"],
                "label": n["name"],
                "spof": n["id"] in spof,
                "island": n["id"] in islands,
                "orphan": n["id"] in orphans,
            }
        }
        for n in graph.get("nodes", [])
    ]
    edges = [
        {"data": {"id": e["id"], "source": e["from_tool_id"], "target": e["to_tool_id"]}}
        for e in graph.get("edges", [])
    ]
    return {"nodes": nodes, "edges": edges}


def timeline(renewals: list[dict[str, Any]], today: dt.date, within_days: int) -> list[dict[str, Any]]:
    """Each renewal placed on a line from today to `within_days` ahead (0..100): its notice deadline,
    its end, and whether the notice deadline has passed or falls within 30 days."""
    span = max(within_days, 1)

    def at(day: object) -> float:
        try:
            when = dt.date.fromisoformat(str(day))
        except ValueError:
            return 0.0
        return max(0.0, min(100.0, (when - today).days / span * 100))

    out = []
    for r in sorted(renewals, key=lambda r: str(r.get("notice_deadline"))):
        try:
            notice_in = (dt.date.fromisoformat(str(r.get("notice_deadline"))) - today).days
        except ValueError:
            notice_in = 0
        urgency = "passed" if notice_in < 0 else "soon" if notice_in <= 30 else "later"
        out.append({**r, "x_notice": at(r.get("notice_deadline")), "x_end": at(r.get("end")), "urgency": urgency})
    return out


@router.get("/stack")
async def stack(
    page: Page = Depends(signed_in),
    category: str | None = None,
    lifecycle: str | None = None,
    team: str | None = None,
    within_days: int = 180,
) -> Response:
    lifecycle = lifecycle if lifecycle in LIFECYCLES else ""
    api = page.api
    tools, categories, renewals, usage, overlaps, graph, analysis, contracts = await asyncio.gather(
        api.items("/registry/v1/tools", category=category, lifecycle=lifecycle or None, team=team),
        _maybe(page, "/registry/v1/categories"),
        _maybe(page, "/registry/v1/renewals", within_days=max(0, min(within_days, 3650))),
        _maybe(page, "/registry/v1/utilization"),
        _maybe(page, "/registry/v1/overlaps"),
        _maybe(page, "/registry/v1/graph"),
        _maybe(page, "/registry/v1/analysis"),
        _maybe(page, "/registry/v1/contracts", limit=200),
    )
    every = {t["id"]: t for t in await api.items("/registry/v1/tools")} if (category or lifecycle or team) else None
    names = {t["id"]: t["name"] for t in (every or {t["id"]: t for t in tools}).values()}
    if graph and "nodes" in graph:
        names.update({n["id"]: n["name"] for n in graph["nodes"]})
    marks = analysis if analysis and "orphans" in analysis else {}
    return page.render(
        "stack.html",
        tools=tools,
        categories=(categories or {}).get("items", []),
        renewals=renewals,
        contracts=contracts,
        timeline=timeline((renewals or {}).get("items") or [], dt.date.today(), within_days),
        today=dt.date.today(),
        usage=usage,
        overlaps=overlaps,
        graph=graph,
        analysis=analysis,
        names=names,
        graph_json=json.dumps(graph_data(graph, marks)) if graph and "nodes" in graph else None,
        filters={"category": category or "", "lifecycle": lifecycle, "team": team or "", "within_days": within_days},
        lifecycles=LIFECYCLES,
    )
