"""The directory: people (id = the subject of their token), their roles and scopes, their teams.

Roles in a workflow stage resolve to the active people holding them whose scopes cover the task's
(as the workflow engine decides who may act). Roles and scopes are what an e-mail decision is made
with, so only an admin sets them; a person may change their own contact details.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, insert, select

from services.notify import schemas
from services.notify.models import Person, PersonRole, Team
from shared import csvtext
from shared.db import utcnow
from shared.errors import Conflict, Errors, Forbidden, NotFound, PreconditionFailed
from shared.identity import Principal
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork

PRIVILEGED = ("roles", "scopes", "active")
CSV_COLUMNS = {
    "id",
    "name",
    "email",
    "chat_handle",
    "slack_webhook_url",
    "teams_webhook_url",
    "timezone",
    "calendar",
    "quiet_start",
    "quiet_end",
    "team",
    "roles",
    "scopes",
    "active",
}
MAX_IMPORT = 10_000


def record(p: Person) -> schemas.PersonOut:
    quiet = schemas.QuietHours(start=p.quiet_start, end=p.quiet_end) if p.quiet_start and p.quiet_end else None
    return schemas.PersonOut(
        id=p.id,
        name=p.name,
        email=p.email,
        chat_handle=p.chat_handle,
        slack_webhook_url=p.slack_webhook_url,
        teams_webhook_url=p.teams_webhook_url,
        timezone=p.timezone,
        calendar=p.calendar,
        quiet_hours=quiet,
        team=p.team,
        roles=list(p.roles),
        scopes=list(p.scopes),
        active=p.active,
        version=p.version,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


def _columns(body: schemas.PersonFields) -> dict[str, Any]:
    values = body.model_dump(exclude={"quiet_hours", "id"})
    values["quiet_start"] = body.quiet_hours.start if body.quiet_hours else None
    values["quiet_end"] = body.quiet_hours.end if body.quiet_hours else None
    return values


async def _set_roles(uow: UnitOfWork, person_id: str, roles: Iterable[str]) -> None:
    await uow.execute(delete(PersonRole).where(PersonRole.person_id == person_id))
    rows = [{"person_id": person_id, "role": r} for r in roles]
    if rows:
        await uow.execute(insert(PersonRole), rows)


async def get_person(uow: UnitOfWork, person_id: str) -> Person:
    p = await uow.get(Person, person_id)
    if p is None:
        raise NotFound(f"No person {person_id!r} in the directory.")
    return p


def ensure_may_read(who: Principal, person_id: str) -> None:
    if who.subject != person_id and not who.has_role("admin", "mops"):
        raise Forbidden("Only admin and mops read other people's directory entries.")


async def create_person(uow: UnitOfWork, who: Principal, *, body: schemas.PersonIn) -> schemas.PersonOut:
    if await uow.get(Person, body.id) is not None:
        raise Conflict(f"Person {body.id!r} is already in the directory; PUT /v1/people/{{id}} changes them.")
    now = utcnow()
    p = Person(**_columns(body), id=body.id, version=1, created_at=now, updated_at=now)
    uow.add(p)
    await uow.flush()
    await _set_roles(uow, p.id, p.roles)
    out = record(p)
    await uow.audit("person", p.id, action="notify.person.created", after=out.model_dump(mode="json"))
    return out


async def update_person(
    uow: UnitOfWork, who: Principal, *, person_id: str, body: schemas.PersonFields, expected_version: int | None
) -> schemas.PersonOut:
    p = await get_person(uow, person_id)
    if expected_version is not None and expected_version != p.version:
        raise PreconditionFailed(f"Person {person_id!r} is at version {p.version}, not {expected_version}; reload it.")
    values = _columns(body)
    if not who.is_admin:
        if who.subject != person_id:
            raise Forbidden("Only an admin changes someone else's directory entry.")
        changed = [f for f in PRIVILEGED if values[f] != getattr(p, f)]
        if changed:
            raise Forbidden(f"Only an admin changes {', '.join(changed)} (what an e-mail decision is made with).")
    before = record(p).model_dump(mode="json")
    for name, value in values.items():
        setattr(p, name, value)
    p.version += 1
    p.updated_at = utcnow()
    await uow.flush()
    await _set_roles(uow, p.id, p.roles)
    out = record(p)
    await uow.audit("person", p.id, action="notify.person.updated", before=before, after=out.model_dump(mode="json"))
    return out


async def list_people(
    uow: UnitOfWork, *, limit: int, cursor: str | None, role: str | None = None, team: str | None = None
) -> schemas.PersonPage:
    query = select(Person).order_by(Person.id)
    if role:
        query = query.where(Person.id.in_(select(PersonRole.person_id).where(PersonRole.role == role)))
    if team:
        query = query.where(Person.team == team)
    key = decode_cursor(cursor, _text)
    if key:
        query = query.where(Person.id > key[0])
    rows = list((await uow.scalars(query.limit(limit + 1))).all())
    page, next_cursor = page_of(rows, limit, lambda p: (p.id,))
    return schemas.PersonPage(items=[record(p) for p in page], next_cursor=next_cursor)


def _text(part: Any) -> str:
    if not isinstance(part, str):
        raise TypeError("not a string")
    return part


def _csv_person(rec: dict[str | None, Any]) -> dict[str, Any]:
    """One CSV record as PersonIn's fields: roles and scopes are space or ';' separated lists."""
    out: dict[str, Any] = {}
    for key, value in rec.items():
        if key is None or value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        value = value.strip()
        if key in ("roles", "scopes"):
            out[key] = [v for v in value.replace(";", " ").split() if v]
        elif key == "active":
            out[key] = value.lower() in ("1", "true", "yes")
        elif key not in ("quiet_start", "quiet_end"):
            out[key] = value
    if (rec.get("quiet_start") or "").strip() or (rec.get("quiet_end") or "").strip():
        out["quiet_hours"] = {
            "start": (rec.get("quiet_start") or "").strip(),
            "end": (rec.get("quiet_end") or "").strip(),
        }
    return out


async def import_csv(uow: UnitOfWork, who: Principal, *, text: str) -> schemas.ImportResult:
    """Create or update every person of the CSV, all or nothing; every bad cell is named at once."""
    header, records = csvtext.read_csv(text)
    errs = Errors()
    if "id" not in header or "name" not in header:
        errs.add("body", "the header must name at least the columns id and name")
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        errs.add("body", f"unknown column(s) {', '.join(unknown)}; known: {', '.join(sorted(CSV_COLUMNS))}")
    if len(records) > MAX_IMPORT:
        errs.add("body", f"at most {MAX_IMPORT} people per import")
    errs.raise_if_any()
    parsed: list[schemas.PersonIn] = []
    seen: set[str] = set()
    for n, rec in enumerate(records, start=2):
        if None in rec:
            errs.add(f"body.line {n}", "has more cells than the header")
            continue
        try:
            person = schemas.PersonIn.model_validate(_csv_person(rec))
        except ValidationError as exc:
            for e in exc.errors():
                errs.add(f"body.line {n}.{'.'.join(str(p) for p in e['loc'])}", e["msg"])
            continue
        if person.id in seen:
            errs.add(f"body.line {n}.id", f"{person.id!r} appears twice")
        seen.add(person.id)
        parsed.append(person)
    errs.raise_if_any()
    existing = {p.id: p for p in (await uow.scalars(select(Person).where(Person.id.in_(seen)))).all()} if seen else {}
    created = updated = 0
    for person in parsed:
        if person.id in existing:
            await update_person(uow, who, person_id=person.id, body=person, expected_version=None)
            updated += 1
        else:
            await create_person(uow, who, body=person)
            created += 1
    return schemas.ImportResult(created=created, updated=updated, people=[p.id for p in parsed])


async def put_team(uow: UnitOfWork, *, name: str, body: schemas.TeamIn) -> schemas.TeamOut:
    team = await uow.get(Team, name)
    if team is None:
        team = Team(name=name, updated_at=utcnow())
        uow.add(team)
    team.slack_webhook_url, team.teams_webhook_url = body.slack_webhook_url, body.teams_webhook_url
    team.updated_at = utcnow()
    await uow.flush()
    return schemas.TeamOut(
        name=name, slack_webhook_url=team.slack_webhook_url, teams_webhook_url=team.teams_webhook_url
    )


async def people(uow: UnitOfWork, ids: Iterable[str]) -> list[Person]:
    """The active people among `ids` (someone not in the directory is told nothing)."""
    wanted = [i for i in dict.fromkeys(ids) if i]
    if not wanted:
        return []
    found = (await uow.scalars(select(Person).where(Person.id.in_(wanted), Person.active.is_(True)))).all()
    by_id = {p.id: p for p in found}
    return [by_id[i] for i in wanted if i in by_id]


async def owner_or_holders(uow: UnitOfWork, owner: str | None, roles: Iterable[str]) -> list[Person]:
    """The owner an event names, else the active holders of `roles` (who stands in for owners)."""
    return await people(uow, [owner]) if owner else await holders(uow, roles)


async def holders(uow: UnitOfWork, roles: Iterable[str], scope: dict[str, Any] | None = None) -> list[Person]:
    """Active people holding one of `roles` whose scopes cover `scope` (unnarrowed holders cover all)."""
    wanted = [r for r in dict.fromkeys(roles) if r]
    if not wanted:
        return []
    query = (
        select(Person)
        .where(
            Person.active.is_(True),
            Person.id.in_(select(PersonRole.person_id).where(PersonRole.role.in_(wanted))),
        )
        .order_by(Person.id)
    )
    out = []
    for p in (await uow.scalars(query)).all():
        who = Principal(p.id, scopes=frozenset(p.scopes))
        if all(
            (allowed := who.scope_values(dim)) is None or str(value) in allowed for dim, value in (scope or {}).items()
        ):
            out.append(p)
    return out


def principal_of(p: Person) -> Principal:
    """The identity a person's e-mail decision is made under (their directory roles and scopes)."""
    return Principal(p.id, roles=frozenset(p.roles), scopes=frozenset(p.scopes), kind="user")


async def team_members(uow: UnitOfWork, team: str) -> list[Person]:
    """The active people of `team` in the directory."""
    query = select(Person).where(Person.team == team, Person.active.is_(True)).order_by(Person.id)
    return list((await uow.scalars(query)).all())


async def supplier_people(uow: UnitOfWork, supplier_id: str) -> list[Person]:
    """Active holders of the `supplier` role whose scopes name `supplier:<id>`: the supplier's people,
    as the workflow service knows its principals (one without a supplier scope acts for none)."""
    query = (
        select(Person)
        .where(
            Person.active.is_(True),
            Person.id.in_(select(PersonRole.person_id).where(PersonRole.role == "supplier")),
        )
        .order_by(Person.id)
    )
    return [p for p in (await uow.scalars(query)).all() if f"supplier:{supplier_id}" in p.scopes]
