"""Definitions: versioned JSON documents of stages, published whole and never changed.

Publishing checks every part at once (unknown calendars and roles, quorum against seats, condition
trees, an SLA its calendar cannot give) and stores the key's next version; an instance pins the
version it started with, so each process keeps the versions it has read (`Definitions`). An event
starts the best matching definition: highest trigger priority, then the most specific conditions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, insert, select
from sqlalchemy.exc import IntegrityError

from services.workflow import conditions
from services.workflow.calendar_store import Calendars
from services.workflow.calendars import CalendarError
from services.workflow.instances import new_id, seats_of
from services.workflow.models import definitions
from services.workflow.schemas import DefinitionIn, DefinitionOut, DefinitionPage
from shared.db import utcnow
from shared.errors import Conflict, Errors, Invalid, NotFound
from shared.identity import ROLES, Principal
from shared.pagination import decode_cursor, encode_cursor
from shared.uow import UnitOfWork

DEFAULT_CALENDAR = "default"
Stage = dict[str, Any]  # a normalised stage, as stored (normalise_stage)


@dataclass(frozen=True, slots=True)
class Definition:
    """One published version of a definition (a row of `definitions`)."""

    id: str
    key: str
    version: int
    name: str
    description: str | None
    trigger: dict[str, Any] | None
    trigger_event: str | None
    priority: int
    calendar: str
    stages: list[Stage]
    created_at: dt.datetime
    created_by: str

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Definition:
        return cls(**{k: row[k] for k in cls.__slots__})

    def view(self) -> DefinitionOut:
        return DefinitionOut.model_validate(self, from_attributes=True)

    @property
    def conditions(self) -> list[Any]:
        return list((self.trigger or {}).get("conditions") or [])


class Definitions:
    """The published versions by id, each read once per process (a published version never changes)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Definition] = {}

    async def pinned(self, uow: UnitOfWork, definition_id: str) -> Definition:
        found = self._by_id.get(definition_id)
        if found is None:
            row = (await uow.execute(select(definitions).where(definitions.c.id == definition_id))).mappings().one()
            found = self._by_id[definition_id] = Definition.from_row(row)
        return found


# --- publishing -------------------------------------------------------------------------------------


async def create_definition(
    uow: UnitOfWork, who: Principal, *, body: DefinitionIn, calendars: Calendars, version: int | None = None
) -> DefinitionOut:
    """Validate every part (all reasons at once) and publish it as the key's next version (or exactly
    `version`, failing with Conflict when it exists: how replicas ship defaults once)."""
    doc = body.model_dump(mode="json")
    known = await calendars.keys(uow)
    calendar = doc.get("calendar") or DEFAULT_CALENDAR
    errors = validate(doc, known, calendar)
    for i, st in enumerate(doc["stages"]):  # an SLA the calendar cannot give would fail every instance
        sla = st.get("sla") or {}
        cal_key = sla.get("calendar") or calendar
        if sla.get("business_hours") and not sla.get("deadline_from_context") and cal_key in known:
            try:
                (await calendars.get(uow, cal_key)).add(utcnow(), hours(sla["business_hours"]))
            except CalendarError as exc:
                errors.add(f"stages[{i}].sla.business_hours", f"{exc} (calendar {cal_key!r})")
    errors.raise_if_any()
    if version is None:
        current = await uow.scalar(select(func.max(definitions.c.version)).where(definitions.c.key == body.key))
        version = (current or 0) + 1
    trigger = doc.get("trigger")
    row = {
        "id": new_id(),
        "key": body.key,
        "version": version,
        "name": body.name,
        "description": body.description,
        "trigger": trigger,
        "trigger_event": trigger["event"] if trigger else None,
        "priority": int((trigger or {}).get("priority") or 0),
        "calendar": calendar,
        "stages": [normalise_stage(st, calendar) for st in doc["stages"]],
        "created_at": utcnow(),
        "created_by": who.subject,
    }
    try:
        async with uow.begin_nested():
            await uow.execute(insert(definitions).values(**row))
    except IntegrityError as exc:
        raise Conflict(f"Another version of {body.key!r} was published at the same moment; retry.") from exc
    return Definition.from_row(row).view()


def validate(doc: Mapping[str, Any], known_calendars: set[str], calendar: str) -> Errors:
    """Every reason a definition document (as JSON) cannot be published, named by field."""
    errors = Errors()
    if calendar not in known_calendars:
        errors.add("calendar", f"unknown calendar {calendar!r}")
    trigger = doc.get("trigger")
    if trigger is not None:
        conditions.validate(trigger.get("conditions") or [], errors, "trigger.conditions")
    stages = doc.get("stages") or []
    if not stages:
        errors.add("stages", "a definition needs at least one stage")
    names: set[str] = set()
    for i, st in enumerate(stages):
        validate_stage(st, f"stages[{i}]", known_calendars, errors)
        if st["name"] in names:
            errors.add(f"stages[{i}].name", f"duplicate stage name {st['name']!r}")
        names.add(st["name"])
    return errors


def validate_stage(st: Mapping[str, Any], where: str, known_calendars: set[str], errors: Errors) -> None:
    a = st.get("assignees") or {}
    roles, users = a.get("roles") or [], a.get("users") or []
    if not roles and not users:
        errors.add(f"{where}.assignees", "name at least one role or user")
    for i, r in enumerate(roles):
        if r not in ROLES:
            errors.add(f"{where}.assignees.roles[{i}]", f"unknown role {r!r} (one of {', '.join(ROLES)})")
        elif r == "analyst":
            errors.add(f"{where}.assignees.roles[{i}]", "analysts are read-only and cannot decide")
    seats = len(seats_of(a))
    mode = st.get("mode", "any")
    if mode == "quorum":
        n = st.get("quorum")
        if n is None:
            errors.add(f"{where}.quorum", "is required when mode is quorum")
        elif n < 1 or n > seats:
            errors.add(f"{where}.quorum", f"must be between 1 and the number of assignees ({seats}); got {n}")
    elif st.get("quorum") is not None:
        errors.add(f"{where}.quorum", "is only allowed with mode quorum")
    sla = st.get("sla")
    if sla:
        if bool(sla.get("business_hours")) == bool(sla.get("deadline_from_context")):
            errors.add(f"{where}.sla", "give exactly one of business_hours or deadline_from_context")
        cal = sla.get("calendar")
        if cal and cal not in known_calendars:
            errors.add(f"{where}.sla.calendar", f"unknown calendar {cal!r}")
    esc = st.get("escalation") or {}
    if esc.get("reassign_to_role") and esc["reassign_to_role"] not in ROLES:
        errors.add(f"{where}.escalation.reassign_to_role", f"unknown role {esc['reassign_to_role']!r}")
    if esc and not sla:
        errors.add(f"{where}.escalation", "an escalation needs an sla to breach")
    if st.get("auto_approve") is not None:
        conditions.validate(st["auto_approve"], errors, f"{where}.auto_approve")


def normalise_stage(st: Mapping[str, Any], calendar: str) -> Stage:
    """A stage as stored: every key present, the SLA's calendar resolved, empty escalations dropped."""
    a = st.get("assignees") or {}
    out: Stage = {
        "name": st["name"],
        "assignees": {
            "roles": list(a.get("roles") or []),
            "users": list(a.get("users") or []),
            "scope_from_context": list(a.get("scope_from_context") or []),
        },
        "mode": st.get("mode", "any"),
        "quorum": st.get("quorum"),
        "sla": None,
        "escalation": {k: v for k, v in (st.get("escalation") or {}).items() if v} or None,
        "auto_approve": st.get("auto_approve"),
    }
    if st.get("sla"):
        sla = st["sla"]
        out["sla"] = {
            "business_hours": str(sla["business_hours"]) if sla.get("business_hours") else None,
            "deadline_from_context": sla.get("deadline_from_context"),
            "calendar": sla.get("calendar") or calendar,
            "warn_at": str(sla.get("warn_at") or "0.75"),
        }
    return out


def hours(business_hours: Any) -> dt.timedelta:
    return dt.timedelta(seconds=float(Decimal(str(business_hours)) * 3600))


# --- reading ----------------------------------------------------------------------------------------


async def get_definition(uow: UnitOfWork, key: str, version: int | None = None) -> Definition:
    q = select(definitions).where(definitions.c.key == key)
    q = q.where(definitions.c.version == version) if version else q.order_by(definitions.c.version.desc())
    row = (await uow.execute(q.limit(1))).mappings().first()
    if row is None:
        raise NotFound(f"No definition {key!r}" + (f" version {version}." if version else "."))
    return Definition.from_row(row)


async def definition_to_start(uow: UnitOfWork, key: str, version: int | None) -> Definition:
    """The definition a start request names; an unknown one is a 422 naming the body's field."""
    try:
        return await get_definition(uow, key, version)
    except NotFound as exc:
        raise Invalid.on(
            "definition_key", f"no definition {key!r}" + (f" version {version}" if version else "")
        ) from exc


async def list_definitions(uow: UnitOfWork, *, limit: int, cursor: str | None) -> DefinitionPage:
    """Latest version of each key, by key."""
    latest = (
        select(definitions.c.key, func.max(definitions.c.version).label("v")).group_by(definitions.c.key).subquery()
    )
    q = (
        select(definitions)
        .join(latest, and_(definitions.c.key == latest.c.key, definitions.c.version == latest.c.v))
        .order_by(definitions.c.key)
    )
    after = decode_cursor(cursor)
    if after:
        q = q.where(definitions.c.key > str(after[0]))
    rows = [Definition.from_row(r) for r in (await uow.execute(q.limit(limit + 1))).mappings().all()]
    nxt = encode_cursor(rows[limit - 1].key) if len(rows) > limit else None
    return DefinitionPage(items=[r.view() for r in rows[:limit]], next_cursor=nxt)


async def match_definition(uow: UnitOfWork, event: str, context: Mapping[str, Any]) -> Definition | None:
    """The latest version of each definition triggered by `event` whose conditions hold; the best first:
    highest priority, then most specific (most leaf conditions), then key."""
    rows = (
        (
            await uow.execute(
                select(definitions).where(definitions.c.trigger_event == event).order_by(definitions.c.version.desc())
            )
        )
        .mappings()
        .all()
    )
    latest: dict[str, Definition] = {}
    for r in rows:
        if r["key"] not in latest:
            latest[r["key"]] = Definition.from_row(r)
    candidates = [d for d in latest.values() if conditions.evaluate(d.conditions, dict(context))]
    candidates.sort(key=lambda d: (-d.priority, -conditions.specificity(d.conditions), d.key))
    return candidates[0] if candidates else None
