"""The budget's campaigns as the workflow knows them: a local projection of `budget.campaign.*`
events (today `budget.campaign.created`), so `GET /v1/calendar` shows campaign dates next to the
deliverables without calling the budget.

Each event is read tolerantly (fields a newer minor version adds are ignored) but within the
columns' bounds (an event that can never apply is Invalid: dead-lettered at once). A campaign's row
is replaced by a newer event and left alone by an older one arriving late (`as_of`, the event's
time), so the projection converges whatever the order; the inbox makes a redelivery a no-op.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field
from sqlalchemy import insert, select, update

from services.workflow import suppliers
from services.workflow.deliverable_schemas import CalendarCampaign, CalendarEntry
from services.workflow.events import ON_CAMPAIGN_CREATED
from services.workflow.models import campaigns
from shared.contracts import EventData, EventSpec
from shared.errors import Invalid
from shared.events import Envelope
from shared.identity import Principal
from shared.uow import UnitOfWork


class CampaignSeen(EventData):
    """What the workflow reads of a `budget.campaign.*` event (budget's `BudgetCampaign`)."""

    campaign_id: str = Field(min_length=1, max_length=36)
    plan_id: str = Field(min_length=1, max_length=36)
    plan_name: str = Field(min_length=1, max_length=200)
    code: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)
    starts_on: dt.date
    ends_on: dt.date
    status: str = Field(min_length=1, max_length=20)
    owner: str | None = Field(default=None, max_length=200)


CAMPAIGN_DATA = EventSpec(ON_CAMPAIGN_CREATED.subject, CampaignSeen, ON_CAMPAIGN_CREATED.summary)


async def remember(uow: UnitOfWork, env: Envelope) -> None:
    """Apply a campaign event to the projection (insert, or replace an older state)."""
    c = CAMPAIGN_DATA.read(env.data)
    if c.ends_on < c.starts_on:
        raise Invalid.on("data.ends_on", f"is before starts_on {c.starts_on.isoformat()}")
    try:
        as_of = env.occurred_at
    except ValueError as exc:
        raise Invalid.on("time", "must be an ISO 8601 instant") from exc
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=dt.UTC)
    values: dict[str, Any] = {
        "plan_id": c.plan_id,
        "plan_name": c.plan_name,
        "code": c.code,
        "name": c.name,
        "starts_on": c.starts_on,
        "ends_on": c.ends_on,
        "status": c.status,
        "owner": c.owner,
        "as_of": as_of,
    }
    q = select(campaigns.c.as_of).where(campaigns.c.id == c.campaign_id).with_for_update()
    seen = (await uow.execute(q)).scalar_one_or_none()
    if seen is None:
        await uow.execute(insert(campaigns).values(id=c.campaign_id, **values))
    elif seen <= as_of:
        await uow.execute(update(campaigns).where(campaigns.c.id == c.campaign_id).values(**values))


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


async def between(uow: UnitOfWork, who: Principal, *, start: dt.datetime, end: dt.datetime) -> list[CalendarEntry]:
    """Campaigns running at some time in [start, end) (their days read as UTC days), by start date.
    Campaigns are budget data: a supplier's principal sees none."""
    if suppliers.supplier_ids(who) is not None:
        return []
    first_day = start.astimezone(dt.UTC).date()
    last_day = (end.astimezone(dt.UTC) - dt.timedelta(microseconds=1)).date()
    q = (
        select(campaigns)
        .where(campaigns.c.starts_on <= last_day, campaigns.c.ends_on >= first_day)
        .order_by(campaigns.c.starts_on, campaigns.c.code, campaigns.c.id)
    )
    rows = (await uow.execute(q)).mappings().all()
    return [
        CalendarEntry(
            kind="campaign",
            id=r["id"],
            title=r["name"],
            at=_midnight(r["starts_on"]),
            ends_at=_midnight(r["ends_on"] + dt.timedelta(days=1)),
            status=r["status"],
            request_number=None,
            assignee=r["owner"],
            campaign=CalendarCampaign(
                code=r["code"],
                plan_id=r["plan_id"],
                plan_name=r["plan_name"],
                starts_on=r["starts_on"],
                ends_on=r["ends_on"],
            ),
        )
        for r in rows
    ]
