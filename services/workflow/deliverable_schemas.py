"""Request and answer models of deliverables (and the actions on them)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.workflow.deliverable_states import Status
from services.workflow.events import Timestamp
from services.workflow.schemas import MAX_SLA_HOURS, Name, Strict, User
from shared.bounds import Day

SlaKind = Literal["ola", "underpinning_contract"]


class DeliverableIn(Strict):
    name: str = Name
    owner: str | None = Field(
        default=None, min_length=1, max_length=200, description="the user who acts for the team (internal work)"
    )
    team: str | None = Field(default=None, min_length=1, max_length=100, description="the internal team (an OLA)")
    supplier_id: str | None = Field(
        default=None, min_length=1, max_length=36, description="the supplier (an underpinning contract)"
    )
    due_date: Day | None = Field(default=None, description="due at the end of this business day")
    business_hours: Decimal | None = Field(
        default=None, gt=0, le=MAX_SLA_HOURS, description="due this many business hours from now"
    )
    calendar: str | None = Field(
        default=None,
        max_length=100,
        description="default: the supplier's calendar for a supplier, the team's for a registered team with one"
        " (POST /v1/teams), else the definition's calendar",
    )
    warn_at: Decimal = Field(
        default=Decimal("0.75"), gt=0, lt=1, description="the SLA warns at this fraction of its business time"
    )
    escalate_to: list[User] = Field(
        default_factory=list, max_length=20, description="who is notified on breach (default: the requester)"
    )


class ReasonIn(Strict):
    reason: str = Field(min_length=1, max_length=2000, description="why the delivery goes back")


class DeliverIn(Strict):
    link: str | None = Field(
        default=None, min_length=1, max_length=2000, pattern=r"^https?://\S+$", description="where the work is"
    )
    attachment_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=36,
        description="the file delivered: one uploaded to POST /v1/deliverables/{id}/attachments",
    )


class Empty(Strict):
    pass


class DeliverableOut(BaseModel):
    id: str
    request_id: str
    name: str
    owner: str | None
    team: str | None
    supplier_id: str | None
    sla_kind: SlaKind = Field(description="ola for an internal team, underpinning_contract for a supplier")
    status: Status
    calendar: str
    business_hours: str | None
    due_at: Timestamp
    warn_at: Timestamp | None
    sla_state: str | None = Field(
        description="on_track | at_risk | breached while the assignee works; paused while delivered or in_review;"
        " met | breached once done"
    )
    remaining_business_minutes: int | None
    rework_rounds: int
    escalated: bool
    link: str | None
    attachment_id: str | None = Field(description="the file delivered (GET /v1/deliverables/{id}/attachments/{it})")
    delivered_at: Timestamp | None
    finished_at: Timestamp | None
    created_at: Timestamp
    created_by: str
    version: int


class DeliverablePage(BaseModel):
    items: list[DeliverableOut]
    next_cursor: str | None


class ContactIn(Strict):
    name: str = Name
    email: str = Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, max_length=40)


class SupplierIn(Strict):
    name: str = Name
    calendar: str = Field(
        default="default", min_length=1, max_length=100, description="the business calendar its work is due on"
    )
    contacts: list[ContactIn] = Field(default_factory=list, max_length=50)


class SupplierOut(BaseModel):
    id: str
    name: str
    calendar: str
    contacts: list[ContactIn]
    created_at: Timestamp
    created_by: str


class SupplierPage(BaseModel):
    items: list[SupplierOut]
    next_cursor: str | None


class AssigneeReportRow(BaseModel):
    assignee: str = Field(description="the supplier's id, or the team (owner:<user> for work without a team)")
    name: str = Field(description="the supplier's name, or the team")
    period: str = Field(description="2027-10 (month) or 2027-W43 (ISO week) of completion")
    completed: int = Field(description="deliverables done (throughput)")
    on_time: int = Field(description="delivered by their due time, the SLA never breached")
    on_time_rate_pct: Decimal
    avg_lateness_business_hours: Decimal = Field(
        description="mean business hours from due time to last delivery on the assignee's calendar (on time: 0)"
    )
    rework_rounds: int = Field(description="deliveries sent back, in total")


class AssigneeReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    by: Literal["supplier", "team"]
    period: Literal["week", "month"]
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    rows: list[AssigneeReportRow]


class CalendarCampaign(BaseModel):
    code: str
    plan_id: str
    plan_name: str = Field(description="the budget plan that funds it")
    starts_on: dt.date = Field(description="its first day")
    ends_on: dt.date = Field(description="its last day")


class CalendarEntry(BaseModel):
    kind: Literal["deliverable", "campaign"]
    id: str = Field(description="the deliverable's id, or the budget campaign's")
    title: str = Field(description="the deliverable's or the campaign's name")
    at: Timestamp = Field(description="a deliverable: when it is due; a campaign: the start of its first day (UTC)")
    ends_at: Timestamp | None = Field(
        default=None, description="a campaign: the end of its last day (UTC, exclusive); a deliverable: null"
    )
    status: str = Field(
        description="a deliverable's status (open ... in_review, done, cancelled); a campaign's (planned, active,"
        " completed, cancelled)"
    )
    request_number: str | None = Field(description="a deliverable's request; a campaign: null")
    assignee: str | None = Field(description="a deliverable's supplier, team or owner; a campaign's owner")
    campaign: CalendarCampaign | None = Field(default=None, description="a campaign's code, plan and days")


class CalendarTimeline(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: Timestamp = Field(alias="from")
    to: Timestamp
    items: list[CalendarEntry]
    truncated: bool = Field(description="more than 2000 entries: narrow the window")
    campaigns_as_of: Timestamp | None = Field(
        default=None,
        description="the time of the newest budget campaign event applied (campaigns come from budget.campaign.*"
        " events, so a campaign created a moment ago may not be here yet); null before any",
    )


class TeamIn(Strict):
    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[^/\x00-\x1f]+$",
        description="the team, as deliverables name it in `team` (no slash)",
    )
    members: list[User] = Field(
        default_factory=list,
        max_length=500,
        description="who may act for it: a deliverable of the team must have one of them as owner (none: anyone)",
    )
    calendar: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="the business calendar its deliverables are due on (none: the request's definition's)",
    )


class TeamOut(BaseModel):
    name: str
    members: list[str]
    calendar: str | None
    created_at: Timestamp
    created_by: str


class TeamPage(BaseModel):
    items: list[TeamOut]
    next_cursor: str | None
