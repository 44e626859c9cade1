"""Integrations: the data flows between tools (the edges of the stack's graph).

An integration is created, changed (`PATCH`), reported on (health: working or not, and when it was
last seen working) and retired (`DELETE`, kept with its history). Every change writes a history
row; a flow that turns `broken` publishes `registry.integration.broken` so its owner hears of it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select

from services.registry import cursors, events, history, schemas
from services.registry.models import Integration, IntegrationHistory, Tool
from shared.db import utcnow
from shared.errors import Conflict, Errors, Invalid, NotFound, PreconditionFailed
from shared.identity import Principal, ensure_unscoped
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork

WHAT = "The tool catalogue"  # integrations are part of it: a scoped principal may not change them
HEALTH_WHAT = "Integration health"
TRACKED = ("data_objects", "direction", "method", "owner", "status", "notes")


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
        last_seen_working_at=e.last_seen_working_at,
        health_detail=e.health_detail,
        version=e.version,
        updated_at=e.updated_at,
    )


def _fields(e: Integration) -> dict[str, Any]:
    return {f: getattr(e, f) for f in TRACKED}


def _trail(
    uow: UnitOfWork, e: Integration, action: str, actor: str, changes: dict[str, Any], reason: str | None = None
) -> None:
    uow.add(
        IntegrationHistory(
            integration_id=e.id,
            version=e.version,
            action=action,
            actor=actor,
            at=utcnow(),
            changes=history.jsonable(changes),
            reason=reason,
        )
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
    now = utcnow()
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
        created_at=now,
        last_seen_working_at=now if body.status == "active" else None,
        version=1,
        updated_at=now,
    )
    uow.add(edge)
    await uow.flush()
    _trail(uow, edge, "created", who.subject, {f: {"from": None, "to": v} for f, v in _fields(edge).items()})
    return record(edge)


async def get_integration(uow: UnitOfWork, integration_id: str) -> schemas.IntegrationOut:
    edge = await uow.get(Integration, integration_id)
    if edge is None:
        raise NotFound(f"No integration with id {integration_id!r}.")
    return record(edge)


async def _locked(uow: UnitOfWork, integration_id: str, expected_version: int | None) -> Integration:
    """The integration, locked, at the version the caller read; a retired one takes no more changes."""
    query = select(Integration).where(Integration.id == integration_id)
    if uow.dialect != "sqlite":
        query = query.with_for_update()
    edge: Integration | None = await uow.scalar(query)
    if edge is None:
        raise NotFound(f"No integration with id {integration_id!r}.")
    if expected_version is not None and edge.version != expected_version:
        raise PreconditionFailed(
            f"The integration is at version {edge.version}, not {expected_version}: reload it and try again.",
            current_version=edge.version,
        )
    if edge.status == "retired":
        raise Conflict("The integration is retired; a retired integration takes no more changes.")
    return edge


async def update_integration(
    uow: UnitOfWork,
    who: Principal,
    *,
    integration_id: str,
    patch: schemas.IntegrationPatch,
    expected_version: int,
) -> schemas.IntegrationOut:
    ensure_unscoped(who, WHAT)
    edge = await _locked(uow, integration_id, expected_version)
    before = _fields(edge)
    changes = patch.model_dump(exclude_unset=True, exclude={"reason"})
    for key, value in changes.items():
        setattr(edge, key, value)
    diff = {f: {"from": before[f], "to": getattr(edge, f)} for f in TRACKED if before[f] != getattr(edge, f)}
    if not diff:
        return record(edge)
    now = utcnow()
    if edge.status == "active" and before["status"] != "active":
        edge.last_seen_working_at = now  # someone says it works again
    edge.version += 1
    edge.updated_at = now
    await uow.flush()
    _trail(uow, edge, "updated", who.subject, diff, patch.reason)
    if edge.status == "broken" and before["status"] != "broken":
        await _publish_broken(uow, edge, before["status"], patch.reason, who.subject)
    return record(edge)


async def report_health(
    uow: UnitOfWork, who: Principal, *, integration_id: str, body: schemas.HealthIn
) -> schemas.IntegrationOut:
    """A monitor (or a person) saw the flow working or failing: working moves a broken flow back to
    active and sets `last_seen_working_at`; failing marks it broken (once: `registry.integration.broken`)."""
    ensure_unscoped(who, HEALTH_WHAT)
    now = utcnow()
    at = body.at or now
    if at > now + dt.timedelta(minutes=5):
        raise Invalid.on("at", "a health report cannot be dated in the future")
    edge = await _locked(uow, integration_id, None)
    before = _fields(edge) | {"last_seen_working_at": edge.last_seen_working_at}
    if body.working:
        if edge.last_seen_working_at is None or at > edge.last_seen_working_at:
            edge.last_seen_working_at = at
        if edge.status == "broken":
            edge.status = "active"
    elif edge.status != "planned":
        edge.status = "broken"
    edge.health_detail = body.detail
    diff = {
        f: {"from": before[f], "to": getattr(edge, f)}
        for f in ("status", "last_seen_working_at")
        if before[f] != getattr(edge, f)
    }
    edge.version += 1
    edge.updated_at = now
    await uow.flush()
    _trail(uow, edge, "health", who.subject, diff, body.detail)
    if edge.status == "broken" and before["status"] != "broken":
        await _publish_broken(uow, edge, before["status"], body.detail, who.subject)
    return record(edge)


async def retire_integration(
    uow: UnitOfWork, who: Principal, *, integration_id: str, expected_version: int | None, reason: str | None = None
) -> schemas.IntegrationOut:
    """Retire the flow: it leaves the graph, the analysis and the reports, and keeps its history."""
    ensure_unscoped(who, WHAT)
    edge = await _locked(uow, integration_id, expected_version)
    before = edge.status
    edge.status = "retired"
    edge.version += 1
    edge.updated_at = utcnow()
    await uow.flush()
    _trail(uow, edge, "retired", who.subject, {"status": {"from": before, "to": "retired"}}, reason)
    return record(edge)


async def _publish_broken(uow: UnitOfWork, edge: Integration, previous: str, detail: str | None, actor: str) -> None:
    rows = await uow.execute(select(Tool.id, Tool.name).where(Tool.id.in_([edge.from_tool_id, edge.to_tool_id])))
    names: dict[str, str] = {r.id: r.name for r in rows}
    data = events.RegistryIntegrationBroken(
        integration_id=edge.id,
        from_tool_id=edge.from_tool_id,
        from_tool_name=names.get(edge.from_tool_id, ""),
        to_tool_id=edge.to_tool_id,
        to_tool_name=names.get(edge.to_tool_id, ""),
        data_objects=list(edge.data_objects),
        method=edge.method,
        owner=edge.owner,
        previous_status=previous,
        last_seen_working_at=edge.last_seen_working_at,
        detail=detail,
        reported_by=actor,
    )
    await uow.publish(events.INTEGRATION_BROKEN, edge.id, data)


async def list_integrations(
    uow: UnitOfWork,
    *,
    limit: int,
    cursor: str | None,
    tool_id: str | None = None,
    status: str | None = None,
) -> schemas.IntegrationPage:
    query = select(Integration).order_by(Integration.id)
    if tool_id:
        query = query.where((Integration.from_tool_id == tool_id) | (Integration.to_tool_id == tool_id))
    if status:
        query = query.where(Integration.status == status)
    key = decode_cursor(cursor, cursors.text)
    if key:
        query = query.where(Integration.id > key[0])
    rows = list((await uow.scalars(query.limit(limit + 1))).all())
    page, next_cursor = page_of(rows, limit, lambda e: (e.id,))
    return schemas.IntegrationPage(items=[record(e) for e in page], next_cursor=next_cursor)


async def list_history(
    uow: UnitOfWork, *, integration_id: str, limit: int, cursor: str | None
) -> schemas.IntegrationHistoryPage:
    if await uow.get(Integration, integration_id) is None:
        raise NotFound(f"No integration with id {integration_id!r}.")
    h = IntegrationHistory
    query = select(h).where(h.integration_id == integration_id).order_by(h.seq)
    key = decode_cursor(cursor, int)
    if key:
        query = query.where(h.seq > key[0])
    rows = list((await uow.scalars(query.limit(limit + 1))).all())
    page, next_cursor = page_of(rows, limit, lambda r: (r.seq,))
    items = [
        schemas.IntegrationHistoryEntry(
            seq=r.seq, version=r.version, action=r.action, actor=r.actor, at=r.at, changes=r.changes, reason=r.reason
        )
        for r in page
    ]
    return schemas.IntegrationHistoryPage(items=items, next_cursor=next_cursor)
