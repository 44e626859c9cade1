"""The budget's event contract: every subject it publishes, the model of each event's `data`, and
what it consumes (workflow decisions on its commitments, the registry's contract terms).

Published through the outbox, in the transaction of the change (postings write their events in
their own statement, checked against the same models). Model names carry the service's name: the
gateway merges every service's schemas into one AsyncAPI document. Amounts are decimal strings in
the currency's scale ("1250.00"), as the API writes them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from services.registry import events as registry
from shared.contracts import Catalogue, Consumed, EventData, EventSpec

Amount = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", examples=["1250.00"])]
Period = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}$", examples=["2027-03"])]
Dimensions = Annotated[
    dict[str, str | None], Field(description="region, channel, campaign, cost_center, owner: those the line has")
]


class BudgetPlanActivated(EventData):
    plan_id: str
    name: str
    fiscal_year: int
    currency: str


class BudgetCampaign(EventData):
    """A campaign of a plan with its dates, status and planned cost (the workflow's calendar shows it)."""

    campaign_id: str
    plan_id: str
    plan_name: str
    code: str
    name: str
    starts_on: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="its first day (ISO 8601 date)")
    ends_on: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="its last day (ISO 8601 date)")
    status: Literal["planned", "active", "completed", "cancelled"]
    owner: str | None
    planned_cost: Amount
    currency: str


class BudgetLineCreated(EventData):
    plan_id: str
    line_id: str
    code: str
    name: str
    parent_code: str | None
    dimensions: Dimensions


class BudgetEntryPosted(EventData):
    """A ledger entry on a line (an allocation; transfers and actuals add to it). A reversal publishes the
    same subject with the negative amount and the entry it reverses."""

    entry_id: str
    plan_id: str
    line_id: str
    line_code: str
    period: Period
    amount: Amount
    currency: str
    dimensions: Dimensions
    reverses_entry_id: str | None = Field(default=None, description="set on a reversal")


class BudgetTransferPosted(BudgetEntryPosted):
    """Money moved between two lines of a plan: the receiving entry, with the giving side."""

    transfer_id: str
    from_entry_id: str
    from_line_id: str
    from_line_code: str
    to_line_id: str
    to_line_code: str
    from_dimensions: Dimensions


class BudgetActualPosted(BudgetEntryPosted):
    date: str = Field(description="the entry's day as an ISO 8601 instant (midnight UTC)")
    original_amount: Amount
    original_currency: str
    commitment_id: str | None
    external_ref: str | None
    vendor: str | None
    campaign_id: str | None = Field(default=None, description="the campaign it funds, if any")
    campaign_code: str | None = None


class BudgetCommitmentRequested(EventData):
    """A commitment as its events carry it; `requested` waits for approval (`reason` says why)."""

    commitment_id: str
    plan_id: str
    line_id: str
    line_code: str
    period: Period
    amount: Amount
    currency: str
    original_amount: Amount
    original_currency: str
    external_ref: str | None
    memo: str | None
    requested_by: str
    reason: Literal["threshold", "over_available"] | None
    dimensions: Dimensions = Field(description="every dimension, null where the line has none")


class BudgetCommitmentStatus(BudgetCommitmentRequested):
    status: Literal["pending_approval", "committed", "released", "closed"]


class BudgetLineThresholdCrossed(EventData):
    line_id: str
    line_code: str
    period: Period
    threshold: int = Field(description="80 or 100: per cent of the allocation now consumed")
    allocated: Amount
    consumed: Amount
    currency: str


class BudgetLineOverspent(EventData):
    """An actual (a fact: always posted) took a line's available money below zero in its period."""

    entry_id: str
    plan_id: str
    line_id: str
    line_code: str
    period: Period
    amount: Amount = Field(description="the actual's amount in the plan currency")
    available: Amount = Field(description="the line's available money after the actual (negative)")
    overspent_by: Amount = Field(description="how far below zero the line now is")
    currency: str
    external_ref: str | None
    vendor: str | None
    dimensions: Dimensions


class BudgetCommitmentRefused(EventData):
    """A commitment that arrived as an event or ERP document was refused: kept at /v1/refusals, retriable."""

    refusal_id: str
    kind: Literal["contract_commitment", "erp_purchase_order"]
    external_ref: str = Field(description="contract:<contract_id>:<term>, or the purchase order number")
    plan_id: str | None
    line_id: str | None
    line_code: str | None
    fiscal_year: int | None
    period: str | None
    amount: Amount | None
    currency: str | None
    memo: str | None
    reason: str = Field(description="why, as the refusing problem's detail said it")
    code: str = Field(description="the refusing problem's kind: conflict (no money), validation-error (no line)")
    requested_by: str
    dimensions: Dimensions


class BudgetRequestItem(EventData):
    line_id: str
    line_code: str
    period: Period
    amount: Amount


class BudgetRequestSubmitted(EventData):
    """A line owner's bottom-up request: amounts per line and month of a plan, with a justification. The
    workflow starts its approval (subject `{"type": "budget_request", "service": "budget"}`)."""

    request_id: str
    plan_id: str
    plan_name: str
    fiscal_year: int
    currency: str
    total: Amount = Field(description="the sum of the items, plan currency")
    justification: str
    requested_by: str
    line_codes: list[str] = Field(description="the lines asked for, each once")
    items: list[BudgetRequestItem]
    dimensions: Dimensions = Field(description="the dimension values every requested line shares (null otherwise)")


PLAN_ACTIVATED = EventSpec("budget.plan.activated", BudgetPlanActivated, "A plan went live: postings may start")
LINE_CREATED = EventSpec("budget.line.created", BudgetLineCreated, "A budget line was added to a plan")
CAMPAIGN_CREATED = EventSpec(
    "budget.campaign.created", BudgetCampaign, "A campaign of a plan was created, with its dates and status"
)
ALLOCATION_POSTED = EventSpec(
    "budget.allocation.posted", BudgetEntryPosted, "Money was allocated to a line (negative: a reversal)"
)
TRANSFER_POSTED = EventSpec("budget.transfer.posted", BudgetTransferPosted, "Money moved between two lines")
COMMITMENT_REQUESTED = EventSpec(
    "budget.commitment.requested", BudgetCommitmentRequested, "A commitment waits for approval (workflow starts one)"
)
COMMITMENT_COMMITTED = EventSpec(
    "budget.commitment.committed", BudgetCommitmentStatus, "A commitment holds money (approved, or within policy)"
)
COMMITMENT_RELEASED = EventSpec(
    "budget.commitment.released", BudgetCommitmentStatus, "A commitment's open remainder was released"
)
COMMITMENT_CHANGED = EventSpec(
    "budget.commitment.changed", BudgetCommitmentStatus, "A commitment moved to a new amount, line or period"
)
ACTUAL_POSTED = EventSpec(
    "budget.actual.posted", BudgetActualPosted, "Money was spent on a line (negative: a reversal)"
)
THRESHOLD_CROSSED = EventSpec(
    "budget.line.threshold_crossed", BudgetLineThresholdCrossed, "A line consumed 80 % or 100 % of its allocation"
)
OVERSPENT = EventSpec(
    "budget.line.overspent", BudgetLineOverspent, "An actual was posted beyond the line's available money"
)
COMMITMENT_REFUSED = EventSpec(
    "budget.commitment.refused",
    BudgetCommitmentRefused,
    "A contract's or purchase order's commitment was refused; listed at /v1/refusals for a retry",
)
REQUEST_SUBMITTED = EventSpec(
    "budget.request.submitted",
    BudgetRequestSubmitted,
    "A line owner asked for money per line and month; workflow starts its approval (approval posts allocations)",
)

CATALOGUE = Catalogue(
    "budget",
    publishes=(
        PLAN_ACTIVATED,
        LINE_CREATED,
        CAMPAIGN_CREATED,
        ALLOCATION_POSTED,
        TRANSFER_POSTED,
        COMMITMENT_REQUESTED,
        COMMITMENT_COMMITTED,
        COMMITMENT_RELEASED,
        COMMITMENT_CHANGED,
        ACTUAL_POSTED,
        THRESHOLD_CROSSED,
        OVERSPENT,
        COMMITMENT_REFUSED,
        REQUEST_SUBMITTED,
    ),
    consumes=(
        # Spelled out: workflow's events module reads budget's requests, and neither may import the other.
        Consumed(
            "workflow.instance.approved",
            "Approves the budget commitment the instance was about, or posts the approved request's allocations",
        ),
        Consumed(
            "workflow.instance.rejected",
            "Releases the budget commitment the instance was about, or rejects the request (with the comment)",
        ),
        Consumed(
            "workflow.instance.cancelled", "A withdrawn approval of a bottom-up request: the request is cancelled"
        ),
        Consumed(registry.CONTRACT_CREATED.subject, "Commits a contract term's cost against its budget line"),
        Consumed(registry.CONTRACT_RENEWED.subject, "Commits the next term's cost against its budget line"),
        Consumed(registry.CONTRACT_CANCELLED.subject, "Releases the term's commitment"),
    ),
    title="Budget",
)
