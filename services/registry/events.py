"""The registry's event contract: every subject it publishes, the model of each event's `data`,
and what it consumes (the outcomes of the workflow's renewal reviews, read in `handlers.py` with a
small tolerant model: the registry does not import the workflow).

Other services import this module to read registry events (budget commits contract terms,
workflow starts the renewal review), so it imports only pydantic and shared. Model names
carry the service's name: the gateway merges every service's schemas into one AsyncAPI
document.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, PlainSerializer, WithJsonSchema

from shared.contracts import Catalogue, Consumed, EventData, EventSpec
from shared.money import DecimalStr

Lifecycle = Literal["evaluating", "pilot", "active", "sunsetting", "retired"]
TimeClass = Literal["tolerate", "invest", "migrate", "eliminate"]
BillingPeriod = Literal["monthly", "quarterly", "annual"]


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


# An instant as the registry has always written it: ISO 8601 with its offset (`+00:00`, not `Z`).
Timestamp = Annotated[
    dt.datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


class RegistryOwner(EventData):
    team: str | None
    person: str | None


class RegistryTool(EventData):
    """A tool as the API shows it."""

    id: str
    name: str
    vendor: str
    category: str
    capabilities: list[str] = Field(description="lower-case tags, each once")
    owner: RegistryOwner
    business_owner: str | None
    lifecycle: Lifecycle
    status: Lifecycle = Field(description="the lifecycle again, as every Pitcrew resource has a status")
    time_class: TimeClass | None
    personal_data: bool
    sso: bool
    url: str | None
    notes: str | None
    version: int
    created_at: Timestamp
    updated_at: Timestamp
    layer: str | None = Field(default=None, description="its layer of the stack (GET /v1/layers), null if none")


class RegistryToolLifecycleChanged(RegistryTool):
    previous_lifecycle: Lifecycle
    reason: str | None


class RegistryContractTerm(EventData):
    """A contract's current term: what budget commits (`commit_amount` on `budget_line_code`)."""

    contract_id: str
    tool_id: str
    tool_name: str
    term: int = Field(ge=1, description="1 for the first term, one more for each renewal")
    start: dt.date
    end: dt.date
    billing_period: BillingPeriod
    cost: DecimalStr = Field(description="per billing period")
    currency: str
    annual_cost: DecimalStr
    commit_amount: DecimalStr = Field(description="the cost of the whole term")
    budget_line_code: str | None
    fiscal_year: int = Field(description="the year of start")
    period: str = Field(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM of start")
    seats: int | None
    auto_renew: bool
    notice_days: int
    external_ref: str = Field(description="contract:<contract_id>:<term>, the commitment's reference in budget")


class RegistryContractCancelled(RegistryContractTerm):
    reason: str | None


class RegistryRenewalDue(EventData):
    """A term's notice deadline is near: the renewal review starts (workflow's `tool-renewal`)."""

    contract_id: str
    tool_id: str
    tool_name: str
    term: int
    start: dt.date
    end: dt.date
    notice_days: int
    notice_deadline: dt.date
    auto_renew: bool
    annual_cost: DecimalStr
    currency: str
    owner: RegistryOwner
    utilization: float | None = Field(description="active users / seats (0-1, 4 decimals), null without usage")
    seats: int | None
    budget_line_code: str | None


class RegistryRenewalMilestone(EventData):
    """A term's notice deadline is `days_before` days away: one of its renewal milestones."""

    contract_id: str
    tool_id: str
    tool_name: str
    term: int
    days_before: int = Field(description="days before the notice deadline (120, 90, 60, 30 by default)")
    milestone_on: dt.date
    notice_deadline: dt.date
    end: dt.date
    auto_renew: bool
    annual_cost: DecimalStr
    currency: str
    owner: RegistryOwner
    utilization: float | None
    opens_review: bool = Field(description="this is the milestone the renewal review opens at (registry.renewal.due)")


class RegistryRenewalDecided(EventData):
    """What a renewal review decided (or the auto-renewal did) for a term, and what the registry did."""

    contract_id: str
    tool_id: str
    tool_name: str
    term: int = Field(description="the term the review was about")
    instance_id: str | None = Field(description="the workflow instance; null for an automatic renewal")
    outcome: Literal["renew", "cancel", "renegotiate", "withdrawn", "auto_renewed"]
    status: Literal["applied", "waiting", "no_effect"]
    late: bool = Field(description="decided after the term's notice deadline")
    notice_deadline: dt.date
    decided_at: Timestamp
    effect: str
    next_term: int | None = Field(description="the term a renewal started")
    auto_renewed_term: int | None = Field(description="the term an auto-renewal started before a late decision")


class RegistryIntegrationBroken(EventData):
    """A data flow between two tools stopped working: its owner (or the tools' owners) should act."""

    integration_id: str
    from_tool_id: str
    from_tool_name: str
    to_tool_id: str
    to_tool_name: str
    data_objects: list[str]
    method: str
    owner: str | None = Field(description="who looks after the flow; null when nobody was named")
    previous_status: str
    last_seen_working_at: Timestamp | None
    detail: str | None = Field(description="what the check or the person reported")
    reported_by: str


class RegistrySavingRecorded(EventData):
    """What a contract change saves per year: the KPI service records it as a `stack_savings` measurement."""

    saving_id: str = Field(
        description="<contract_id>:<term>:<kind>, the measurement's external_id (a redelivery is a duplicate)"
    )
    contract_id: str
    tool_id: str
    tool_name: str
    term: int = Field(description="the term that does not renew, or the cheaper term that starts")
    kind: Literal["cancellation", "seat_reduction", "renegotiation", "cancellation_withdrawn"] = Field(
        description="cancellation_withdrawn: a term whose notice was given renewed after all (the saving, negative)"
    )
    effective_on: dt.date = Field(description="the day the saving starts (the measurement's time)")
    period: str = Field(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM of effective_on")
    annual_saving: DecimalStr = Field(description="per year, in `currency` (negative for a withdrawn cancellation)")
    currency: str
    seats_before: int | None
    seats_after: int | None


TOOL_CREATED = EventSpec("registry.tool.created", RegistryTool, "A tool was catalogued")
TOOL_UPDATED = EventSpec("registry.tool.updated", RegistryTool, "A tool's fields changed")
TOOL_LIFECYCLE_CHANGED = EventSpec(
    "registry.tool.lifecycle_changed", RegistryToolLifecycleChanged, "A tool moved to another lifecycle state"
)
CONTRACT_CREATED = EventSpec(
    "registry.contract.created", RegistryContractTerm, "A contract's first term started: budget commits its cost"
)
CONTRACT_RENEWED = EventSpec(
    "registry.contract.renewed", RegistryContractTerm, "A contract's next term started: budget commits its cost"
)
CONTRACT_CANCELLED = EventSpec(
    "registry.contract.cancelled", RegistryContractCancelled, "A contract ended: budget releases the term's commitment"
)
RENEWAL_DUE = EventSpec(
    "registry.renewal.due", RegistryRenewalDue, "A term's notice deadline is near: review the renewal"
)
RENEWAL_MILESTONE = EventSpec(
    "registry.renewal.milestone", RegistryRenewalMilestone, "A contract term reached a renewal milestone"
)
RENEWAL_DECIDED = EventSpec(
    "registry.renewal.decided", RegistryRenewalDecided, "A renewal review's outcome was applied, or waits"
)
INTEGRATION_BROKEN = EventSpec(
    "registry.integration.broken", RegistryIntegrationBroken, "An integration between two tools stopped working"
)
SAVING_RECORDED = EventSpec(
    "registry.saving.recorded",
    RegistrySavingRecorded,
    "A cancellation or a cheaper renewal saves money per year: the KPI service measures it",
)

CATALOGUE = Catalogue(
    "registry",
    publishes=(
        TOOL_CREATED,
        TOOL_UPDATED,
        TOOL_LIFECYCLE_CHANGED,
        CONTRACT_CREATED,
        CONTRACT_RENEWED,
        CONTRACT_CANCELLED,
        RENEWAL_DUE,
        RENEWAL_MILESTONE,
        RENEWAL_DECIDED,
        INTEGRATION_BROKEN,
        SAVING_RECORDED,
    ),
    consumes=tuple(
        Consumed(f"workflow.instance.{what}", f"A renewal review {summary} (subject type contract, service registry)")
        for what, summary in (
            ("approved", "approved: the contract renews"),
            ("rejected", "rejected: notice is given"),
            ("changes_requested", "asks to renegotiate: the renewal waits"),
            ("resubmitted", "received renegotiated terms"),
            ("cancelled", "was withdrawn"),
        )
    )
    + (
        Consumed("budget.actual.posted", "Spend with a vendor: attached to its tool, or a discovery candidate"),
        Consumed("budget.commitment.refused", "The budget refused a contract term's commitment: shown on the contract"),
        Consumed("budget.commitment.committed", "A contract term's commitment holds money: the refusal is cleared"),
        Consumed("budget.commitment.requested", "A contract term's commitment waits for approval at the budget"),
        Consumed("budget.commitment.released", "A contract term's commitment was released"),
    ),
    title="Registry",
)
