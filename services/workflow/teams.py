"""Internal teams: who is in them and the business calendar their deliverables are due on.

Mops and admins without dimension scopes register a team; everyone but a supplier's principal
reads them. A deliverable names its team by name: a registered team with a calendar has its work
due on that calendar, a team without one (or never registered) on the request's definition's. A
team that lists members takes its deliverables' owners from among them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select

from services.workflow.container import Workflow
from services.workflow.deliverable_schemas import TeamIn, TeamOut, TeamPage
from services.workflow.models import teams
from shared.db import utcnow
from shared.errors import Conflict, Invalid, NotFound
from shared.identity import Principal
from shared.pagination import decode_cursor, encode_cursor
from shared.uow import UnitOfWork


async def create(uow: UnitOfWork, who: Principal, *, body: TeamIn, wf: Workflow) -> TeamOut:
    if body.calendar is not None and body.calendar not in await wf.calendars.keys(uow):
        raise Invalid.on("calendar", f"unknown calendar {body.calendar!r}: create it first (POST /v1/calendars)")
    if len(set(body.members)) != len(body.members):
        raise Invalid.on("members", "lists a member twice")
    if await row_of(uow, body.name) is not None:
        raise Conflict(f"A team named {body.name!r} exists.")
    row = {
        "name": body.name,
        "calendar": body.calendar,
        "members": list(body.members),
        "created_at": utcnow(),
        "created_by": who.subject,
    }
    await uow.execute(insert(teams).values(**row))
    return TeamOut.model_validate(row)


async def row_of(uow: UnitOfWork, name: str) -> Mapping[Any, Any] | None:
    return (await uow.execute(select(teams).where(teams.c.name == name))).mappings().first()


async def get(uow: UnitOfWork, name: str) -> TeamOut:
    row = await row_of(uow, name)
    if row is None:
        raise NotFound(f"No team {name!r}.")
    return TeamOut.model_validate(dict(row))


async def list_teams(uow: UnitOfWork, *, limit: int, cursor: str | None) -> TeamPage:
    q = select(teams).order_by(teams.c.name)
    after = decode_cursor(cursor, str)
    if after:
        q = q.where(teams.c.name > after[0])
    rows = (await uow.execute(q.limit(limit + 1))).mappings().all()
    nxt = encode_cursor(rows[limit - 1]["name"]) if len(rows) > limit else None
    return TeamPage(items=[TeamOut.model_validate(dict(r)) for r in rows[:limit]], next_cursor=nxt)
