"""Business calendars as the service stores them: created once under a key, never changed (a new
key for a new calendar), so each process keeps the ones it has read (`Calendars`).

The arithmetic itself (business time between instants, adding business time) is `calendars.py`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from services.workflow.calendars import MAX_CLOSED_DAYS, BusinessCalendar
from services.workflow.instances import new_id
from services.workflow.models import calendars
from services.workflow.schemas import CalendarIn, CalendarOut
from shared.db import utcnow
from shared.errors import Conflict, Invalid, NotFound
from shared.identity import Principal
from shared.uow import UnitOfWork


class Calendars:
    """The stored calendars by key, each built once per process (they never change)."""

    def __init__(self) -> None:
        self._built: dict[str, BusinessCalendar] = {}

    async def get(self, uow: UnitOfWork, key: str) -> BusinessCalendar:
        cal = self._built.get(key)
        if cal is None:
            row = (await uow.execute(select(calendars).where(calendars.c.key == key))).mappings().first()
            if row is None:
                raise NotFound(f"No calendar {key!r}.")
            hol = row["holidays"] or {}
            cal = BusinessCalendar.build(  # stored before calendars.MAX_PERIODS: still served
                row["timezone"],
                row["hours"],
                hol.get("country"),
                hol.get("subdivision"),
                row["closed_dates"],
                max_periods=None,
            )
            self._built[key] = cal
        return cal

    async def keys(self, uow: UnitOfWork) -> set[str]:
        return set((await uow.scalars(select(calendars.c.key))).all())


async def create_calendar(uow: UnitOfWork, who: Principal, *, body: CalendarIn) -> CalendarOut:
    """Check the calendar opens at least once in MAX_CLOSED_DAYS, then store it under its new key."""
    hol = body.holidays.model_dump()
    cal = BusinessCalendar.build(
        body.timezone, body.hours, hol.get("country"), hol.get("subdivision"), body.closed_dates
    )
    closure = cal.longest_closure()
    if closure and (closure[1] - closure[0]).days >= MAX_CLOSED_DAYS:
        raise Invalid.on(
            "closed_dates",
            f"leave no business hours from {closure[0]} to {closure[1]}; "
            f"a calendar must open at least once in {MAX_CLOSED_DAYS} days",
        )
    if await uow.scalar(select(calendars.c.id).where(calendars.c.key == body.key)):
        raise Conflict(f"Calendar {body.key!r} already exists; calendars are immutable, use a new key.")
    row: dict[str, Any] = {
        "id": new_id(),
        "key": body.key,
        "timezone": body.timezone,
        "hours": body.hours,
        "holidays": {k: v for k, v in hol.items() if v},
        "closed_dates": [str(d) for d in body.closed_dates],
        "version": 1,
        "created_at": utcnow(),
        "created_by": who.subject,
    }
    await uow.execute(insert(calendars).values(**row))
    return CalendarOut.model_validate(row)


async def list_calendars(uow: UnitOfWork) -> list[CalendarOut]:
    rows = (await uow.execute(select(calendars).order_by(calendars.c.key))).mappings().all()
    return [CalendarOut.model_validate(dict(r)) for r in rows]


async def get_calendar(uow: UnitOfWork, key: str) -> CalendarOut:
    row = (await uow.execute(select(calendars).where(calendars.c.key == key))).mappings().first()
    if row is None:
        raise NotFound(f"No calendar {key!r}.")
    return CalendarOut.model_validate(dict(row))
