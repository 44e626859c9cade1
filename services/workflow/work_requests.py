"""Requests: a form filled in against its type's current version, given a human number
(`REQ-<year>-<sequence>`) and started as an instance of the type's definition, the request as its
subject and its data as the instance's context (so regions scope it and conditions read it).

Visibility is the instance's: the requester, the current assignees, and anyone whose scopes cover
the data (otherwise 404, as if it did not exist).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from services.workflow import intake, lifecycle, queries, store
from services.workflow.container import Workflow
from services.workflow.definitions import definition_to_start
from services.workflow.events import REQUEST_SUBMITTED
from services.workflow.instances import new_id
from services.workflow.models import instances, request_counters, requests
from services.workflow.request_schemas import RequestIn, RequestPage, RequestSummary
from shared.db import utcnow
from shared.errors import Invalid, NotFound
from shared.identity import Principal
from shared.pagination import decode_cursor, encode_cursor, instant
from shared.uow import UnitOfWork

PREFIX = "REQ"
SUBJECT_TYPE = "request"


async def submit(uow: UnitOfWork, who: Principal, *, body: RequestIn, wf: Workflow) -> str:
    """Validate, number, announce and start a request; returns its id. Nothing is written on refusal."""
    rtype = await intake.type_to_submit(uow, body.type_key)
    intake.data_problems(rtype.form, body.data).raise_if_any()
    if not who.may_see(body.data):
        raise Invalid.on("data", f"is outside your scopes ({', '.join(sorted(who.scopes))}): name a region you cover")
    definition = await definition_to_start(uow, rtype.definition_key, None)
    now = utcnow()
    request_id, instance_id = new_id(), new_id()
    number = await allocate_number(uow, now.year)
    await uow.publish(
        REQUEST_SUBMITTED,
        request_id,
        {
            "request_id": request_id,
            "number": number,
            "type_key": rtype.key,
            "type_version": rtype.version,
            "title": body.title,
            "data": body.data,
            "requester": who.subject,
            "instance_id": instance_id,
            "definition_key": definition.key,
            "submitted_at": now,
        },
        correlation_id=who.request_id,
    )
    await lifecycle.start(
        uow,
        wf,
        definition,
        subject={"type": SUBJECT_TYPE, "id": request_id, "service": "workflow"},
        context=dict(body.data),
        requester=who.subject,
        correlation_id=who.request_id,
        instance_id=instance_id,
    )
    await uow.execute(
        insert(requests).values(
            id=request_id,
            number=number,
            request_type_id=rtype.id,
            type_key=rtype.key,
            type_version=rtype.version,
            title=body.title,
            data=body.data,
            requester=who.subject,
            instance_id=instance_id,
            created_at=now,
        )
    )
    return request_id


async def allocate_number(uow: UnitOfWork, year: int) -> str:
    """The year's next number, in the caller's transaction: the UPDATE holds the counter's row (a row
    lock on PostgreSQL; SQLite writers hold the database from BEGIN IMMEDIATE), so concurrent
    submissions queue and a rolled-back one gives its number back. A year's first request creates
    the row; a racing first insert loses on the primary key and bumps the winner's row instead."""
    for _ in range(2):
        last = await uow.scalar(
            update(request_counters)
            .where(request_counters.c.year == year)
            .values(last=request_counters.c.last + 1)
            .returning(request_counters.c.last)
        )
        if last is not None:
            return f"{PREFIX}-{year}-{last:06d}"
        try:
            async with uow.begin_nested():
                await uow.execute(insert(request_counters).values(year=year, last=0))
        except IntegrityError:
            pass
    raise RuntimeError(f"request counter of {year} neither found nor created")  # unreachable: the row exists now


# --- reading ----------------------------------------------------------------------------------------


def summary(row: Mapping[Any, Any]) -> RequestSummary:
    return RequestSummary.model_validate(dict(row))


_COLUMNS = (*requests.c, instances.c.status)


async def visible_row(uow: UnitOfWork, who: Principal, *, ref: str) -> Mapping[Any, Any]:
    """A request's row (with its instance's status) by id or number, if the caller may see it."""
    column = requests.c.number if ref.startswith(f"{PREFIX}-") else requests.c.id
    q = select(*_COLUMNS).join(instances, instances.c.id == requests.c.instance_id).where(column == ref)
    row = (await uow.execute(q)).mappings().first()
    if row is None:
        raise NotFound(f"No request {ref}.")
    try:
        await queries.ensure_visible(uow, who, inst=await store.get_instance(uow, row["instance_id"]))
    except NotFound as exc:
        raise NotFound(f"No request {ref}.") from exc
    return row


async def list_requests(
    uow: UnitOfWork,
    who: Principal,
    *,
    type_key: str | None,
    status: str | None,
    mine: bool,
    limit: int,
    cursor: str | None,
) -> RequestPage:
    """Newest first, those the caller may see: their own, or within their scopes (filtered in batches,
    so a page is always full)."""
    q = (
        select(*_COLUMNS)
        .join(instances, instances.c.id == requests.c.instance_id)
        .order_by(requests.c.created_at.desc(), requests.c.id.desc())
    )
    if type_key:
        q = q.where(requests.c.type_key == type_key)
    if status:
        q = q.where(instances.c.status == status)
    if mine:
        q = q.where(requests.c.requester == who.subject)
    after = decode_cursor(cursor, instant, str)
    if after:
        at: dt.datetime = after[0]
        q = q.where(or_(requests.c.created_at < at, and_(requests.c.created_at == at, requests.c.id < after[1])))
    out: list[Mapping[Any, Any]] = []
    batch, offset = max(limit * 2, 50), 0
    while len(out) <= limit:
        rows = (await uow.execute(q.limit(batch).offset(offset))).mappings().all()
        out.extend(r for r in rows if who.subject == r["requester"] or who.may_see(r["data"]))
        if len(rows) < batch:
            break
        offset += batch
    nxt = None
    if len(out) > limit:
        last = out[limit - 1]
        nxt = encode_cursor(last["created_at"].isoformat(), last["id"])
    return RequestPage(items=[summary(r) for r in out[:limit]], next_cursor=nxt)
