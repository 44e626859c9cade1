"""CRM lifecycle facts: when an entity (a lead, followed through to its opportunity) first reached a stage.

The CRM webhook (gateway/webhooks.py) sends one fact per event: `lead.created` -> lead,
`lead.stage_changed` -> mql or sql, `opportunity.created` -> opportunity, `opportunity.won` -> won,
`opportunity.lost` -> lost. An entity reaches a stage once: a repeat is counted as a duplicate and
the first fact stays, so a cohort (services/kpi/cohorts.py) counts each entity once. A fact's
dimensions must lie within the caller's scopes, as a measurement's do.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.kpi.models import lifecycle_facts
from shared.db import insert_ignore, utcnow
from shared.errors import Errors
from shared.identity import Principal
from shared.uow import UnitOfWork

STAGES = ("lead", "mql", "sql", "opportunity", "won", "lost")


async def add_facts(uow: UnitOfWork, who: Principal, *, items: list[dict[str, Any]]) -> dict[str, int]:
    """Store every new fact, or none (a 422 naming items.<n> when one lies outside the caller's scopes)."""
    errs = Errors()
    for n, i in enumerate(items):
        if not who.may_see(i["dimensions"] or {}):
            errs.add(f"items.{n}.dimensions", f"outside your scopes ({', '.join(sorted(who.scopes))})", "forbidden")
    errs.raise_if_any()
    now = utcnow()
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for i in items:  # the earliest of a batch's repeats is the fact
        key = (i["entity_id"], i["stage"])
        if key not in rows or i["time"] < rows[key]["time"]:
            rows[key] = {
                "entity_id": i["entity_id"],
                "stage": i["stage"],
                "time": i["time"],
                "dimensions": i["dimensions"] or {},
                "source": i.get("source") or who.subject[:100],
                "received_at": now,
            }
    known = await _known(uow, sorted({e for e, _ in rows}))
    new = [r for k, r in rows.items() if k not in known]
    if new:
        await uow.execute(insert_ignore(uow.dialect, lifecycle_facts, ["entity_id", "stage"]), new)
    return {"accepted": len(new), "duplicates": len(items) - len(new)}


async def _known(uow: UnitOfWork, entities: list[str]) -> set[tuple[str, str]]:
    """The (entity, stage) pairs already stored for these entities."""
    f = lifecycle_facts.c
    known: set[tuple[str, str]] = set()
    for i in range(0, len(entities), 900):
        rows = await uow.execute(select(f.entity_id, f.stage).where(f.entity_id.in_(entities[i : i + 900])))
        known.update((r.entity_id, r.stage) for r in rows)
    return known
