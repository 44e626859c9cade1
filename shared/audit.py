"""The audit trail: every change in a service, who made it, when, through which request, before and after.

Rows are written in the transaction of the change itself (append-only: the database refuses UPDATE
and DELETE on `audit_log`), from two sources:

- every event the change publishes (the outbox writes the audit row beside the outbox row): the
  entity is the subject's middle part (`budget.commitment.requested` -> commitment), its id the
  event's subject id, `after` the event's data;
- use cases that change something without publishing an event call `UnitOfWork.audit(...)`, with
  the entity as it was and as it is.

Who and through what comes from the context of the work: the verified principal and the request
(method, route, request id) for an API call, `service:<publisher>` and the event for a consumer,
`service:<name>` for a timer. `before` is stored when the use case gives it; otherwise it is the
`after` of the same entity's previous entry, found when the trail is read. `GET /v1/audit` (admins)
pages and filters it, and exports it as CSV; the gateway merges every service's trail.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from contextvars import Token
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from sqlalchemy import Table, insert, select

from shared.context import Actor, actor_var
from shared.db import Database, utcnow
from shared.identity import Principal, require_roles
from shared.openapi import problems
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor


def act_as(actor: Actor) -> Token[Actor | None]:
    """Make `actor` the author of what this task changes from now on; returns the token to reset."""
    return actor_var.set(actor)


def current() -> Actor:
    return actor_var.get() or Actor("system", "service")


def entity_of(subject: str) -> str:
    parts = subject.split(".")
    return parts[1] if len(parts) >= 3 else parts[-1]


# What one entry stores, in the order `row` builds it (the budget's posting statement inserts these too).
ROW_COLUMNS = (
    "id",
    "at",
    "actor",
    "actor_kind",
    "request_id",
    "method",
    "path",
    "action",
    "entity",
    "entity_id",
    "before",
    "after",
)


def row(action: str, entity: str, entity_id: str, before: Any, after: Any, now: dt.datetime) -> dict[str, Any]:
    a = current()
    return {
        "id": str(uuid.uuid4()),
        "at": now,
        "actor": a.subject[:200],
        "actor_kind": a.kind[:20],
        "request_id": (a.request_id or "")[:100] or None,
        "method": a.method,
        "path": a.path,
        "action": action[:200],
        "entity": entity[:100],
        "entity_id": str(entity_id)[:200],
        "before": before,
        "after": after,
    }


async def record(
    session: Any, table: Table, *, action: str, entity: str, entity_id: str, before: Any = None, after: Any = None
) -> None:
    """One audit entry in the caller's transaction (a session or a unit of work)."""
    await session.execute(insert(table).values(**row(action, entity, entity_id, before, after, utcnow())))


# -- reading


class Entry(BaseModel):
    seq: int
    id: str
    at: dt.datetime
    service: str
    actor: str
    actor_kind: str
    request_id: str | None
    method: str | None
    path: str | None
    action: str
    entity: str
    entity_id: str
    before: Any
    after: Any


class EntryList(BaseModel):
    items: list[Entry]
    next_cursor: str | None


COLUMNS = (
    "seq",
    "at",
    "service",
    "actor",
    "actor_kind",
    "request_id",
    "method",
    "path",
    "action",
    "entity",
    "entity_id",
    "before",
    "after",
)


async def page(
    db: Database,
    table: Table,
    service: str,
    *,
    entity: str | None,
    entity_id: str | None,
    actor: str | None,
    action: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int,
    cursor: str | None,
) -> EntryList:
    """Newest first; `before` filled from the entity's previous entry when the change did not store it."""
    t = table
    previous = t.alias("previous")
    prior = (
        select(previous.c.after)
        .where(previous.c.entity == t.c.entity, previous.c.entity_id == t.c.entity_id, previous.c.seq < t.c.seq)
        .order_by(previous.c.seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    q = select(t, prior.label("prior")).order_by(t.c.seq.desc()).limit(limit + 1)
    for column, value in ((t.c.entity, entity), (t.c.entity_id, entity_id), (t.c.actor, actor)):
        if value:
            q = q.where(column == value)
    if action:
        q = q.where(t.c.action.startswith(action, autoescape=True))
    if since is not None:
        q = q.where(t.c.at >= since)
    if until is not None:
        q = q.where(t.c.at < until)
    after = decode_cursor(cursor, int)
    if after:
        q = q.where(t.c.seq < after[0])
    async with db.transaction(readonly=True) as s:
        rows = (await s.execute(q)).all()
    items = [
        Entry(
            seq=r.seq,
            id=r.id,
            at=r.at,
            service=service,
            actor=r.actor,
            actor_kind=r.actor_kind,
            request_id=r.request_id,
            method=r.method,
            path=r.path,
            action=r.action,
            entity=r.entity,
            entity_id=r.entity_id,
            before=r.before if r.before is not None else r.prior,
            after=r.after,
        )
        for r in rows[:limit]
    ]
    nxt = encode_cursor(items[-1].seq) if len(rows) > limit and items else None
    return EntryList(items=items, next_cursor=nxt)


def to_csv(entries: list[Entry]) -> str:
    import json

    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for e in entries:
        d = e.model_dump(mode="json")
        w.writerow([json.dumps(d[c], separators=(",", ":")) if c in ("before", "after") else d[c] for c in COLUMNS])
    return out.getvalue()


ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "the trail (JSON or CSV)"}
}


def answer(request: Request, result: EntryList, format: str, filename: str) -> Response | EntryList:
    """A page of the trail as asked: JSON, or CSV (format=csv or Accept: text/csv) with the next cursor
    in a header."""
    if format != "csv" and "text/csv" not in request.headers.get("accept", ""):
        return result
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if result.next_cursor:
        headers["X-Next-Cursor"] = result.next_cursor
    return StreamingResponse(iter([to_csv(result.items)]), media_type="text/csv", headers=headers)


def router() -> APIRouter:
    """`/v1/audit`: admins only, in every service."""
    admin = require_roles()
    r = APIRouter(prefix="/v1/audit", tags=["operations"])

    @r.get(
        "",
        response_model=EntryList,
        responses={**problems(), **ANSWERS},
        summary="The audit trail of this service, newest first (format=csv to export)",
    )
    async def audit_trail(
        request: Request,
        entity: str | None = Query(None, max_length=100),
        entity_id: str | None = Query(None, max_length=200),
        actor: str | None = Query(None, max_length=200),
        action: str | None = Query(None, max_length=200, description="a prefix of the action, e.g. budget.commitment"),
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
        cursor: str | None = None,
        format: Literal["json", "csv"] = "json",
        who: Principal = Depends(admin),
    ) -> Response | EntryList:
        runtime = request.app.state.runtime
        result = await page(
            runtime.db,
            runtime.infra.audit,
            runtime.name,
            entity=entity,
            entity_id=entity_id,
            actor=actor,
            action=action,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
        return answer(request, result, format, f"{runtime.name}-audit.csv")

    return r
