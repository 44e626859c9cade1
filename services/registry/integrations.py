"""Integrations: the data flows between tools (the edges of the stack's graph)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from services.registry import cursors, schemas
from services.registry.models import Integration, Tool
from shared.db import utcnow
from shared.errors import Errors
from shared.identity import Principal, ensure_unscoped
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork

WHAT = "The tool catalogue"  # integrations are part of it: a scoped principal may not change them


def record(e: Any) -> schemas.IntegrationOut:
    """An integration (an ORM object or a row of its table) as the API shows it."""
    return schemas.IntegrationOut(
        id=e.id,
        from_tool_id=e.from_tool_id,
        to_tool_id=e.to_tool_id,
        data_objects=list(e.data_objects),
        direction=e.direction,
        method=e.method,
        owner=e.owner,
        status=e.status,
        notes=e.notes,
        created_at=e.created_at,
    )


async def create_integration(uow: UnitOfWork, who: Principal, *, body: schemas.IntegrationIn) -> schemas.IntegrationOut:
    ensure_unscoped(who, WHAT)
    errors = Errors()
    for field in ("from_tool_id", "to_tool_id"):
        if await uow.get(Tool, getattr(body, field)) is None:
            errors.add(field, f"no tool with id {getattr(body, field)!r}", "unknown_tool")
    if body.from_tool_id == body.to_tool_id:
        errors.add("to_tool_id", "an integration connects two different tools, not a tool to itself", "self_loop")
    errors.raise_if_any()
    edge = Integration(
        id=str(uuid.uuid4()),
        from_tool_id=body.from_tool_id,
        to_tool_id=body.to_tool_id,
        data_objects=body.data_objects,
        direction=body.direction,
        method=body.method,
        owner=body.owner,
        status=body.status,
        notes=body.notes,
        created_at=utcnow(),
    )
    uow.add(edge)
    await uow.flush()
    return record(edge)


async def list_integrations(
    uow: UnitOfWork, *, limit: int, cursor: str | None, tool_id: str | None = None
) -> schemas.IntegrationPage:
    query = select(Integration).order_by(Integration.id)
    if tool_id:
        query = query.where((Integration.from_tool_id == tool_id) | (Integration.to_tool_id == tool_id))
    key = decode_cursor(cursor, cursors.text)
    if key:
        query = query.where(Integration.id > key[0])
    rows = list((await uow.scalars(query.limit(limit + 1))).all())
    page, next_cursor = page_of(rows, limit, lambda e: (e.id,))
    return schemas.IntegrationPage(items=[record(e) for e in page], next_cursor=next_cursor)
