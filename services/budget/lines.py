"""Budget lines: a plan's tree of lines, each with its dimensions (inherited from its parent unless
it sets its own) and a running balance row per period. A caller whose scopes do not cover a line's
dimensions neither sees nor changes it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Row

from services.budget import events
from services.budget.models import balances, lines, plans
from services.budget.periods import periods_of
from services.budget.plans import Plan, get_plan
from shared.db import utcnow
from shared.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from shared.identity import Principal
from shared.uow import UnitOfWork

DIMENSIONS = ("region", "channel", "campaign", "cost_center", "owner")
# A line's limits, here so that the JSON API (schemas.LineIn) and the CSV import check the same.
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
CODE_MAX, NAME_MAX, MAX_TAGS, MAX_DEPTH = 100, 200, 50, 40  # depth: the path column holds 2000 characters of ids
DIMENSION_MAX = {"region": 100, "channel": 100, "campaign": 200, "cost_center": 100, "owner": 200}


def ancestors(path: str) -> list[str]:
    """Line ids from the root down to the line itself (a line's path is "/root/child/")."""
    return [p for p in path.split("/") if p]


def merged_dimensions(parent: dict[str, Any] | None, own: dict[str, Any] | None) -> dict[str, Any]:
    """A line inherits its parent's dimensions unless it sets its own."""
    out = {k: v for k, v in (parent or {}).items() if v is not None}
    out.update({k: v for k, v in (own or {}).items() if v is not None})
    return out


def line_view(ln: Any, parent_code: str | None) -> dict[str, Any]:
    """A line as the API shows it (`schemas.LineOut`)."""
    return {
        "id": ln.id,
        "plan_id": ln.plan_id,
        "code": ln.code,
        "name": ln.name,
        "parent_id": ln.parent_id,
        "parent_code": parent_code,
        "depth": ln.depth,
        "dimensions": ln.dimensions,
        "tags": ln.tags,
        "version": ln.version,
        "created_at": ln.created_at,
    }


def scopes_refuse(who: Principal, what: str) -> Forbidden:
    return Forbidden(f"Your scopes ({', '.join(sorted(who.scopes))}) do not cover {what}.")


async def get_line(uow: UnitOfWork, who: Principal | None, line_id: str, field_name: str = "line_id") -> Row[Any]:
    """A line the caller may see; a 404 for a path parameter, a 422 naming `field_name` for a body field."""
    row = (await uow.execute(select(lines).where(lines.c.id == line_id))).first()
    if row is None:
        if field_name.startswith("path"):
            raise NotFound(f"No budget line {line_id}.")
        raise Invalid.on(field_name, f"no budget line {line_id!r}", "not_found")
    if who is not None and not who.may_see(row.dimensions):
        raise scopes_refuse(who, f"line {row.code!r}")
    return row


async def resolve_line(uow: UnitOfWork, fiscal_year: int, code: str, field_name: str = "budget_line") -> Row[Any]:
    """The line coded `code` in the one active plan of `fiscal_year` that has it (ERP and contracts name
    lines by code)."""
    rows = (
        await uow.execute(
            select(lines)
            .join(plans, plans.c.id == lines.c.plan_id)
            .where(plans.c.fiscal_year == fiscal_year, plans.c.status == "active", lines.c.code == code)
        )
    ).all()
    if not rows:
        raise Invalid.on(
            field_name, f"no active plan of fiscal year {fiscal_year} has a line coded {code!r}", "not_found"
        )
    if len(rows) > 1:
        raise Invalid.on(
            field_name,
            f"{len(rows)} active plans of fiscal year {fiscal_year} have a line coded {code!r}; it is ambiguous",
            "ambiguous",
        )
    return rows[0]


async def create_line(
    uow: UnitOfWork,
    who: Principal,
    *,
    plan_id: str,
    code: str,
    name: str,
    parent_code: str | None = None,
    parent_id: str | None = None,
    dimensions: dict[str, Any] | None = None,
    tags: Sequence[str] = (),
) -> dict[str, Any]:
    p = await get_plan(uow, plan_id)
    if p.status == "closed":
        raise Conflict(f"Plan {p.name!r} is closed; no new lines.")
    parent = await _parent(uow, p, parent_code, parent_id)
    field = "parent_code" if parent_code is not None else "parent_id"
    return await add_line(
        uow, who, p, code=code, name=name, parent=parent, dimensions=dimensions, tags=tags, parent_field=field
    )


async def _parent(uow: UnitOfWork, p: Plan, parent_code: str | None, parent_id: str | None) -> Row[Any] | None:
    if parent_code is None and parent_id is None:
        return None
    q = select(lines).where(lines.c.plan_id == p.id)
    q = q.where(lines.c.code == parent_code) if parent_code is not None else q.where(lines.c.id == parent_id)
    parent = (await uow.execute(q)).first()
    if parent is None:
        fname, val = ("parent_code", parent_code) if parent_code is not None else ("parent_id", parent_id)
        raise Invalid.on(fname, f"no line {val!r} in plan {p.name!r}")
    return parent


async def add_line(
    uow: UnitOfWork,
    who: Principal,
    p: Plan,
    *,
    code: str,
    name: str,
    parent: Any,
    dimensions: dict[str, Any] | None,
    tags: Sequence[str],
    parent_field: str = "parent_code",
) -> dict[str, Any]:
    """A new line under `parent` (or at the root) with its twelve balance rows; publishes budget.line.created."""
    exists = await uow.scalar(select(lines.c.id).where(lines.c.plan_id == p.id, lines.c.code == code))
    if exists:
        raise Conflict(
            f"Plan {p.name!r} already has a line with code {code!r}.",
            errors=[FieldError("code", "already used in this plan", "duplicate")],
        )
    if parent is not None and not who.may_see(parent.dimensions):
        raise Forbidden(
            f"Your scopes ({', '.join(sorted(who.scopes))}) do not cover the parent line "
            f"{parent.code!r}; a line under it would add to its subtree."
        )
    dims = merged_dimensions(parent.dimensions if parent is not None else None, dimensions)
    if not who.may_see(dims):
        raise scopes_refuse(who, f"a line with dimensions {dims}")
    if parent is not None and parent.depth + 1 >= MAX_DEPTH:
        raise Invalid.on(parent_field, f"a line may sit at most {MAX_DEPTH} levels deep")
    line_id = str(uuid.uuid4())
    path = (parent.path if parent is not None else "/") + line_id + "/"
    await uow.execute(
        insert(lines).values(
            id=line_id,
            plan_id=p.id,
            code=code,
            name=name,
            parent_id=parent.id if parent is not None else None,
            path=path,
            depth=path.count("/") - 2,
            dimensions=dims,
            tags=list(tags),
            version=1,
            created_at=utcnow(),
        )
    )
    zero = dict.fromkeys(("allocated", "committed", "pending", "spent"), 0)
    own = {f"own_{k}": 0 for k in zero}
    months = periods_of(p.fiscal_year, p.fiscal_year_start)
    rows = [dict(line_id=line_id, period=per, plan_id=p.id, **zero, **own) for per in months]
    await uow.execute(insert(balances), rows)
    pcode = parent.code if parent is not None else None
    data = events.BudgetLineCreated(
        plan_id=p.id, line_id=line_id, code=code, name=name, parent_code=pcode, dimensions=dims
    )
    await uow.publish(events.LINE_CREATED, line_id, data)
    row = (await uow.execute(select(lines).where(lines.c.id == line_id))).first()
    return line_view(row, pcode)
