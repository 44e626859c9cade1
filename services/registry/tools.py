"""The tool catalogue: create (one or thousands at once), change, move through the lifecycle, list.

Tools carry no dimensions: every change needs a principal no dimension scope narrows (checked
here, on every path that writes: the routes, the catalogue import). Each change writes its
history row and publishes its event in the caller's unit of work.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.exc import IntegrityError

from services.registry import cursors, events, history, layers, schemas
from services.registry.lifecycle import check_move
from services.registry.models import Category, Tool
from shared.db import utcnow
from shared.errors import Conflict, Errors, NotFound, PreconditionFailed
from shared.events import new_event
from shared.identity import Principal, ensure_unscoped
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork

WHAT = "The tool catalogue"  # what a scoped principal may not change
NAMES_PER_QUERY = 500  # names per `IN (...)` when checking which are taken (well under SQLite's 999 variables)

Located = Callable[[int], contextlib.AbstractContextManager[Any]]


def record(t: Tool | Row[Any]) -> schemas.ToolOut:
    """The tool (an ORM object, or a row of its table) as the API and its events show it."""
    return schemas.ToolOut(
        id=t.id,
        name=t.name,
        vendor=t.vendor,
        category=t.category,
        capabilities=list(t.capabilities),
        owner=schemas.OwnerOut(team=t.owner_team, person=t.owner_person),
        business_owner=t.business_owner,
        lifecycle=t.lifecycle,
        status=t.lifecycle,
        time_class=t.time_class,
        personal_data=t.personal_data,
        sso=t.sso,
        url=t.url,
        notes=t.notes,
        version=t.version,
        created_at=t.created_at,
        updated_at=t.updated_at,
        layer=t.layer,
    )


async def categories(uow: UnitOfWork) -> list[schemas.CategoryOut]:
    rows = (await uow.scalars(select(Category).order_by(Category.key))).all()
    return [schemas.CategoryOut(key=c.key, name=c.name, description=c.description) for c in rows]


async def check_category(uow: UnitOfWork, key: str, errors: Errors, field: str = "category") -> None:
    if await uow.get(Category, key) is None:
        keys = ", ".join(c.key for c in await categories(uow))
        errors.add(field, f"{key!r} is not a category; choose one of {keys}", "unknown_category")


async def get_tool(uow: UnitOfWork, tool_id: str) -> Tool:
    tool = await uow.get(Tool, tool_id)
    if tool is None:
        raise NotFound(f"No tool with id {tool_id!r}.")
    return tool


async def create_tool(uow: UnitOfWork, who: Principal, *, body: schemas.ToolIn) -> schemas.ToolOut:
    return (await create_tools(uow, who, bodies=[body]))[0]


async def create_tools(
    uow: UnitOfWork, who: Principal, *, bodies: Sequence[schemas.ToolIn], located: Located | None = None
) -> list[schemas.ToolOut]:
    """Create tools with the same checks, history rows and events as one by one, but in a handful of
    statements whatever their number (a catalogue import creates up to 5,000). `located(i)` wraps the
    refusal of bodies[i] (the catalogue names the document); names must differ among the bodies."""
    ensure_unscoped(who, WHAT)
    if not bodies:
        return []
    where: Located = located or (lambda _index: contextlib.nullcontext())
    await _refuse_unknown_categories(uow, bodies, where)
    await _refuse_unknown_layers(uow, bodies, where)
    await _refuse_taken_names(uow, bodies, where)
    now = utcnow()
    tools = [_new_tool(body, now) for body in bodies]
    uow.add_all(tools)
    await _flush_unique_name(uow, bodies[0].name if len(bodies) == 1 else None)
    views = [record(t) for t in tools]
    await history.record_created(uow, views, who.subject, now)
    await _publish_created(uow, views)
    return views


async def _refuse_unknown_categories(uow: UnitOfWork, bodies: Sequence[schemas.ToolIn], where: Located) -> None:
    keys = set((await uow.scalars(select(Category.key))).all())
    for index, body in enumerate(bodies):
        if body.category not in keys:
            with where(index):
                errors = Errors()
                await check_category(uow, body.category, errors)
                errors.raise_if_any()


async def _refuse_unknown_layers(uow: UnitOfWork, bodies: Sequence[schemas.ToolIn], where: Located) -> None:
    known = set(await layers.keys(uow))
    for index, body in enumerate(bodies):
        if body.layer is not None and body.layer not in known:
            with where(index):
                errors = Errors()
                await layers.check_layer(uow, body.layer, errors)
                errors.raise_if_any()


async def _refuse_taken_names(uow: UnitOfWork, bodies: Sequence[schemas.ToolIn], where: Located) -> None:
    taken: dict[str, str] = {}
    names = [b.name for b in bodies]
    for start in range(0, len(names), NAMES_PER_QUERY):
        chunk = names[start : start + NAMES_PER_QUERY]
        rows = await uow.execute(select(Tool.name, Tool.id).where(Tool.name.in_(chunk)))
        taken.update((r.name, r.id) for r in rows)
    for index, body in enumerate(bodies):
        if body.name in taken:
            with where(index):
                other = taken[body.name]
                raise Conflict(f"A tool named {body.name!r} already exists ({other}).", tool_id=other)


def _new_tool(body: schemas.ToolIn, now: Any) -> Tool:
    owner = body.owner or schemas.Owner()
    return Tool(
        id=str(uuid.uuid4()),
        name=body.name,
        vendor=body.vendor,
        category=body.category,
        capabilities=body.capabilities,
        owner_team=owner.team,
        owner_person=owner.person,
        business_owner=body.business_owner,
        lifecycle=body.lifecycle,
        time_class=body.time_class,
        personal_data=body.personal_data,
        sso=body.sso,
        url=body.url,
        notes=body.notes,
        layer=body.layer,
        version=1,
        created_at=now,
        updated_at=now,
    )


async def _publish_created(uow: UnitOfWork, views: Sequence[schemas.ToolOut]) -> None:
    """`registry.tool.created` for each new tool, validated like any event, written in one statement
    (the outbox's seq keeps their order)."""
    outbox = uow.outbox
    assert outbox is not None, "the registry publishes through its outbox"
    spec, now = events.TOOL_CREATED, utcnow()
    rows = [outbox.row(new_event(spec.subject, outbox.source, v.id, spec.dump(v.model_dump())), now) for v in views]
    await uow.execute(insert(outbox.table), rows)
    outbox.wake_after_commit(uow.session)


async def update_tool(
    uow: UnitOfWork, who: Principal, *, tool_id: str, patch: schemas.ToolPatch, expected_version: int
) -> schemas.ToolOut:
    ensure_unscoped(who, WHAT)
    tool = await _locked_tool(uow, tool_id, expected_version)
    changes = patch.model_dump(exclude_unset=True)
    errors = Errors()
    if "category" in changes:
        await check_category(uow, changes["category"], errors)
    if "layer" in changes:
        await layers.check_layer(uow, changes["layer"], errors)
    errors.raise_if_any()
    if "name" in changes:
        other = await uow.scalar(select(Tool.id).where(Tool.name == changes["name"]))
        if other is not None and other != tool.id:
            raise Conflict(f"A tool named {changes['name']!r} already exists ({other}).", tool_id=other)
    before = record(tool)
    for key, value in changes.items():
        if key == "owner":
            owner = value or {}
            tool.owner_team, tool.owner_person = owner.get("team"), owner.get("person")
        else:
            setattr(tool, key, value)
    diff = history.diff(before.model_dump(), record(tool).model_dump())
    if not diff:
        return before
    tool.version += 1
    tool.updated_at = utcnow()
    await _flush_unique_name(uow, tool.name)
    view = record(tool)
    history.record(uow, tool, "updated", who.subject, diff)
    await uow.publish(events.TOOL_UPDATED, tool.id, view.model_dump())
    return view


async def change_lifecycle(
    uow: UnitOfWork, who: Principal, *, tool_id: str, body: schemas.LifecycleIn, expected_version: int | None
) -> schemas.ToolOut:
    ensure_unscoped(who, WHAT)
    tool = await _locked_tool(uow, tool_id, expected_version)
    check_move(tool.lifecycle, body.lifecycle)
    before = tool.lifecycle
    tool.lifecycle = body.lifecycle
    tool.version += 1
    tool.updated_at = utcnow()
    await uow.flush()
    view = record(tool)
    change = {"lifecycle": {"from": before, "to": body.lifecycle}}
    history.record(uow, tool, "lifecycle_changed", who.subject, change, body.reason)
    await uow.publish(
        events.TOOL_LIFECYCLE_CHANGED,
        tool.id,
        {**view.model_dump(), "previous_lifecycle": before, "reason": body.reason},
    )
    return view


async def _locked_tool(uow: UnitOfWork, tool_id: str, expected_version: int | None) -> Tool:
    query = select(Tool).where(Tool.id == tool_id)
    if uow.dialect != "sqlite":
        query = query.with_for_update()
    tool: Tool | None = await uow.scalar(query)
    if tool is None:
        raise NotFound(f"No tool with id {tool_id!r}.")
    if expected_version is not None and tool.version != expected_version:
        raise PreconditionFailed(
            f"The tool is at version {tool.version}, not {expected_version}: reload it and apply your change again.",
            current_version=tool.version,
        )
    return tool


async def _flush_unique_name(uow: UnitOfWork, name: str | None) -> None:
    """Flush; a concurrent writer that took the same name first is a 409, not a 500."""
    try:
        await uow.flush()
    except IntegrityError as exc:
        what = f"A tool named {name!r} already exists." if name else "One of the tools' names was taken meanwhile."
        raise Conflict(what) from exc


async def list_tools(
    uow: UnitOfWork,
    *,
    limit: int,
    cursor: str | None,
    category: str | None = None,
    lifecycle: str | None = None,
    team: str | None = None,
    capability: str | None = None,
) -> schemas.ToolPage:
    # Plain rows, not ORM objects: a page is read, never changed.
    query = select(Tool.__table__).order_by(Tool.name, Tool.id)
    if category:
        query = query.where(Tool.category == category)
    if lifecycle:
        query = query.where(Tool.lifecycle == lifecycle)
    if team:
        query = query.where(Tool.owner_team == team)
    key = decode_cursor(cursor, cursors.text, cursors.text)
    if key:
        name, last_id = key
        query = query.where((Tool.name > name) | ((Tool.name == name) & (Tool.id > last_id)))
    if capability:
        # Capabilities live in a JSON list; filter in Python so both backends agree.
        tag = capability.lower()
        rows = [t for t in (await uow.execute(query)).all() if tag in t.capabilities][: limit + 1]
    else:
        rows = list((await uow.execute(query.limit(limit + 1))).all())
    page, next_cursor = page_of(rows, limit, lambda t: (t.name, t.id))
    return schemas.ToolPage(items=[record(t) for t in page], next_cursor=next_cursor)
