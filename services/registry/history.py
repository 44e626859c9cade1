"""A tool's audit history: append-only, one row per change (who, when, which fields from what to what)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select

from services.registry import schemas
from services.registry.models import Tool, ToolHistory
from shared.db import utcnow
from shared.errors import NotFound
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork

# The tool fields the history compares.
TRACKED = (
    "name",
    "vendor",
    "category",
    "capabilities",
    "owner",
    "business_owner",
    "lifecycle",
    "time_class",
    "personal_data",
    "sso",
    "url",
    "notes",
    "layer",
)


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """{field: {from, to}} of the tracked fields that differ."""
    return {f: {"from": before[f], "to": after[f]} for f in TRACKED if before[f] != after[f]}


def jsonable(value: Any) -> Any:
    """`value` as the JSON column stores it (dates as ISO 8601)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def record(
    uow: UnitOfWork, tool: Tool, action: str, actor: str, changes: dict[str, Any], reason: str | None = None
) -> None:
    """Add the history row of a change to `tool` (at its new version)."""
    uow.add(
        ToolHistory(
            tool_id=tool.id,
            version=tool.version,
            action=action,
            actor=actor,
            at=utcnow(),
            changes=jsonable(changes),
            reason=reason,
        )
    )


async def record_created(uow: UnitOfWork, tools: Sequence[schemas.ToolOut], actor: str, at: dt.datetime) -> None:
    """The `created` rows of new tools, in one statement (as ORM objects each would be an INSERT)."""
    rows = []
    for t in tools:
        fields = t.model_dump()
        changes = {f: {"from": None, "to": fields[f]} for f in TRACKED}
        rows.append(
            {
                "tool_id": t.id,
                "version": t.version,
                "action": "created",
                "actor": actor,
                "at": at,
                "changes": jsonable(changes),
                "reason": None,
            }
        )
    await uow.execute(insert(ToolHistory), rows)


async def list_history(uow: UnitOfWork, *, tool_id: str, limit: int, cursor: str | None) -> schemas.HistoryPage:
    if await uow.get(Tool, tool_id) is None:
        raise NotFound(f"No tool with id {tool_id!r}.")
    query = select(ToolHistory).where(ToolHistory.tool_id == tool_id).order_by(ToolHistory.seq)
    key = decode_cursor(cursor, int)  # a JSON integer in BIGINT range, or a 422
    if key:
        query = query.where(ToolHistory.seq > key[0])
    rows = list((await uow.scalars(query.limit(limit + 1))).all())
    page, next_cursor = page_of(rows, limit, lambda h: (h.seq,))
    items = [
        schemas.HistoryEntry(
            seq=h.seq, version=h.version, action=h.action, actor=h.actor, at=h.at, changes=h.changes, reason=h.reason
        )
        for h in page
    ]
    return schemas.HistoryPage(items=items, next_cursor=next_cursor)
