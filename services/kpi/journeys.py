"""Journeys for attribution: touchpoints (a channel touched a journey) and conversions (a journey's value).

Touchpoints carry no dimensions, so they reach every scope (the route refuses them to a scoped
principal); a conversion's dimensions must lie within the caller's scopes. A conversion's value
is money: a decimal string in the API's one grammar, never negative, stored in micro-units.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert

from services.kpi.models import conversions, touchpoints
from services.kpi.values import canonical_dims, to_micro
from shared.db import utcnow
from shared.errors import Errors
from shared.identity import Principal
from shared.uow import UnitOfWork


async def add_touchpoints(uow: UnitOfWork, who: Principal, *, items: list[dict[str, Any]]) -> int:
    now = utcnow()
    rows = [
        {
            "id": str(uuid.uuid4()),
            "journey_id": i["journey_id"],
            "time": i["time"],
            "channel": i["channel"],
            "campaign": i.get("campaign"),
            "created_at": now,
        }
        for i in items
    ]
    await uow.execute(insert(touchpoints), rows)
    return len(rows)


async def add_conversions(uow: UnitOfWork, who: Principal, *, items: list[dict[str, Any]]) -> int:
    """Store every conversion, or none: each broken item is reported (items.<n>) in one 422."""
    errs = Errors()
    rows = []
    now = utcnow()
    for n, i in enumerate(items):
        try:
            value = to_micro(i["value"])
            if value < 0:
                raise ValueError("value must not be negative")
            dims = canonical_dims(i.get("dimensions"))
        except ValueError as exc:
            errs.add(f"items.{n}", str(exc))
            continue
        if not who.may_see(dims):
            errs.add(f"items.{n}.dimensions", f"outside your scopes ({', '.join(sorted(who.scopes))})", "forbidden")
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "journey_id": i["journey_id"],
                "time": i["time"],
                "value": value,
                "dimensions": dims,
                "created_at": now,
            }
        )
    errs.raise_if_any()
    await uow.execute(insert(conversions), rows)
    return len(rows)
