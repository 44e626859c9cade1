"""Request and response models of the registry API: the typed records the domain returns, too.

Instants are written as the API always wrote them (ISO 8601 with `+00:00`), money as decimal strings.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.registry.events import BillingPeriod, Lifecycle, TimeClass, Timestamp
from shared.bounds import Day, Instant, Int32
from shared.money import CurrencyCode, DecimalStr
from shared.pagination import Page

Direction = Literal["one_way", "two_way"]
Method = Literal["api", "file", "webhook", "manual"]
IntegrationStatus = Literal["active", "planned", "broken", "retired"]
Source = Literal["sso", "scim", "manual"]

Name = Field(min_length=1, max_length=200)
NOTICE_DAYS_MAX = 3650  # ten years: a longer notice period is a typo


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _tags(values: list[str]) -> list[str]:
    """Capabilities and data objects are lower-case tags, each once, in the order given."""
    out: list[str] = []
    for v in values:
        tag = v.strip().lower()
        if not tag:
            raise ValueError("tags must not be empty")
        if len(tag) > 100:
            raise ValueError(f"tag {tag[:20]!r}... is longer than 100 characters")
        if tag not in out:
            out.append(tag)
    return out


class Owner(Strict):
    team: str | None = Field(default=None, max_length=100)
    person: str | None = Field(default=None, max_length=100)


class ToolFields(Strict):
    """Every descriptive field of a tool (shared by the API and the YAML catalogue)."""

    vendor: str = Field(default="", max_length=200)
    category: str = Field(min_length=1, max_length=50)
    capabilities: list[str] = Field(default_factory=list, max_length=100)
    owner: Owner | None = None
    business_owner: str | None = Field(default=None, max_length=100)
    lifecycle: Lifecycle = "evaluating"
    time_class: TimeClass | None = None
    personal_data: bool = False
    sso: bool = False
    url: str | None = Field(default=None, max_length=500)
    notes: str | None = Field(default=None, max_length=10_000)
    layer: str | None = Field(default=None, min_length=1, max_length=50, description="a key of GET /v1/layers")

    @field_validator("capabilities")
    @classmethod
    def _caps(cls, value: list[str]) -> list[str]:
        return _tags(value)


class ToolIn(ToolFields):
    name: str = Name


class ToolPatch(Strict):
    """Fields to change; `lifecycle` is refused here (it has its own guarded endpoint)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    vendor: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, min_length=1, max_length=50)
    capabilities: list[str] | None = Field(default=None, max_length=100)
    owner: Owner | None = None
    business_owner: str | None = Field(default=None, max_length=100)
    time_class: TimeClass | None = None
    personal_data: bool | None = None
    sso: bool | None = None
    url: str | None = Field(default=None, max_length=500)
    notes: str | None = Field(default=None, max_length=10_000)
    layer: str | None = Field(default=None, min_length=1, max_length=50, description="null takes it out of its layer")
    lifecycle: Any = None

    @field_validator("lifecycle")
    @classmethod
    def _no_lifecycle(cls, value: Any) -> Any:
        raise ValueError("change the lifecycle with POST /v1/tools/{id}/lifecycle, where transitions are checked")

    @field_validator("capabilities")
    @classmethod
    def _caps(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _tags(value)

    @field_validator("name", "vendor", "category", "capabilities", "personal_data", "sso")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value


class LifecycleIn(Strict):
    lifecycle: Lifecycle
    reason: str | None = Field(default=None, max_length=2000)


class OwnerOut(BaseModel):
    team: str | None
    person: str | None


class ToolOut(BaseModel):
    id: str
    name: str
    vendor: str
    category: str
    capabilities: list[str]
    owner: OwnerOut
    business_owner: str | None
    lifecycle: Lifecycle
    status: Lifecycle
    time_class: TimeClass | None
    personal_data: bool
    sso: bool
    url: str | None
    notes: str | None
    version: int
    created_at: Timestamp
    updated_at: Timestamp
    layer: str | None = None


class CategoryOut(BaseModel):
    key: str
    name: str
    description: str


class Categories(BaseModel):
    items: list[CategoryOut]


class HistoryEntry(BaseModel):
    seq: int
    version: int
    action: Literal["created", "updated", "lifecycle_changed"]
    actor: str
    at: Timestamp
    changes: dict[str, Any] = Field(description="{field: {from, to}}")
    reason: str | None


class ContractTermsIn(Strict):
    """A contract term as the catalogue and the API describe it (without the tool)."""

    start: Day
    end: Day
    billing_period: BillingPeriod = "annual"
    cost: DecimalStr = Field(ge=0)
    currency: CurrencyCode
    seats: Int32 | None = None
    auto_renew: bool = False
    notice_days: int = Field(default=0, ge=0, le=NOTICE_DAYS_MAX)
    budget_line_code: str | None = Field(default=None, max_length=100)
    external_ref: str | None = Field(default=None, max_length=200)


class ContractIn(ContractTermsIn):
    tool_id: str = Field(min_length=1, max_length=36)


class RenewIn(Strict):
    """The next term; anything left out is carried over (dates: the same length, right after)."""

    start: Day | None = None
    end: Day | None = None
    billing_period: BillingPeriod | None = None
    cost: DecimalStr | None = Field(default=None, ge=0)
    currency: CurrencyCode | None = None
    seats: Int32 | None = None
    auto_renew: bool | None = None
    notice_days: int | None = Field(default=None, ge=0, le=NOTICE_DAYS_MAX)
    budget_line_code: str | None = Field(default=None, max_length=100)


class CancelIn(Strict):
    reason: str | None = Field(default=None, max_length=2000)


BudgetStatus = Literal["committed", "pending_approval", "refused", "released"]


class BudgetRefusal(BaseModel):
    """The budget refused the term's commitment (budget.commitment.refused): retried at the budget's
    POST /v1/refusals/{refusal_id}/retry once the line is funded; cleared when a commitment is made."""

    refusal_id: str
    reason: str = Field(description="the budget's words, e.g. the line's shortfall")
    code: str = Field(description="conflict (no money, a closed month) or validation-error (no such line)")
    refused_at: Timestamp


class ContractOut(BaseModel):
    id: str
    tool_id: str
    tool_name: str
    term: int
    start: dt.date
    end: dt.date
    billing_period: BillingPeriod
    cost: str
    currency: str
    annual_cost: str
    commit_amount: str
    seats: int | None
    auto_renew: bool
    notice_days: int
    notice_deadline: dt.date
    budget_line_code: str | None
    external_ref: str | None
    status: Literal["active", "cancelled"]
    version: int
    created_at: Timestamp
    updated_at: Timestamp
    notice_given_at: Timestamp | None = Field(
        default=None, description="when notice was given: the term runs out and does not renew"
    )
    budget_status: BudgetStatus | None = Field(
        default=None,
        description="what the budget last said about the current term's commitment (budget.commitment.* events): "
        "committed, pending_approval, refused or released; null until it has said anything",
    )
    budget_refusal: BudgetRefusal | None = Field(
        default=None, description="while budget_status is refused: why, and the refusal to retry at the budget"
    )


class TermOut(BaseModel):
    """A term a contract has had, as it was when it started, and how it ended."""

    term: int
    start: dt.date
    end: dt.date
    billing_period: BillingPeriod
    cost: str
    currency: str
    commit_amount: str
    seats: int | None
    outcome: Literal["current", "renewed", "cancelled"]


class DecisionOut(BaseModel):
    id: str
    contract_id: str
    term: int
    instance_id: str | None
    outcome: Literal["renew", "cancel", "renegotiate", "withdrawn", "auto_renewed"]
    status: Literal["applied", "waiting", "no_effect"]
    late: bool
    notice_deadline: dt.date
    decided_at: Timestamp
    actor: str
    effect: str
    new_terms: dict[str, Any] | None
    next_term: int | None
    auto_renewed_term: int | None


DecisionPage = Page[DecisionOut]


class MilestonesIn(Strict):
    days: list[Annotated[int, Field(ge=0, le=NOTICE_DAYS_MAX)]] | None = Field(
        max_length=12, description="days before the notice deadline; null for the service's default"
    )


class MilestoneOut(BaseModel):
    days: int
    on: dt.date
    due_at: Timestamp | None = Field(description="when it fires (null when its moment passed before it was set)")
    status: Literal["pending", "fired", "passed"]
    fired_at: Timestamp | None
    opens_review: bool


class Milestones(BaseModel):
    contract_id: str
    term: int
    notice_deadline: dt.date
    days: list[int]
    default: bool = Field(description="the service's default milestones are in use")
    items: list[MilestoneOut]


class ContractDetail(ContractOut):
    renewal_due_at: Timestamp | None = Field(description="when registry.renewal.due fires for the current term")
    terms: list[TermOut]


class Utilization(BaseModel):
    """A tool's latest usage in the window: active users over seats."""

    tool_id: str
    as_of: dt.date | None
    source: Source | None
    active_users: int | None
    seats: int | None
    utilization: float | None = Field(description="active_users / seats, 0-1 with 4 decimals; null without either")
    underused: bool
    shelfware: bool


class Utilizations(BaseModel):
    items: list[Utilization]


class SnapshotOut(BaseModel):
    id: str
    tool_id: str
    date: dt.date
    seats_purchased: int | None
    active_users: int
    source: Source
    utilization: Utilization


class RenewalItem(BaseModel):
    contract_id: str
    tool_id: str
    tool_name: str
    term: int
    end: dt.date
    notice_days: int
    notice_deadline: dt.date
    days_left: int
    auto_renew: bool
    annual_cost: str
    currency: str
    seats: int | None
    owner: OwnerOut
    utilization: float | None
    active_users: int | None
    underused: bool
    shelfware: bool


class Renewals(BaseModel):
    within_days: int
    items: list[RenewalItem]


class UtilizationIn(Strict):
    tool_id: str = Field(min_length=1, max_length=36)
    date: Day
    seats_purchased: Int32 | None = None
    active_users: Int32
    source: Source


class IntegrationFields(Strict):
    data_objects: list[str] = Field(default_factory=list, max_length=100)
    direction: Direction = "one_way"
    method: Method
    owner: str | None = Field(default=None, max_length=100)
    status: IntegrationStatus = "active"
    notes: str | None = Field(default=None, max_length=10_000)

    @field_validator("data_objects")
    @classmethod
    def _objects(cls, value: list[str]) -> list[str]:
        return _tags(value)


class IntegrationIn(IntegrationFields):
    from_tool_id: str = Field(min_length=1, max_length=36)
    to_tool_id: str = Field(min_length=1, max_length=36)


class IntegrationOut(BaseModel):
    id: str
    from_tool_id: str
    to_tool_id: str
    data_objects: list[str]
    direction: Direction
    method: Method
    owner: str | None
    status: IntegrationStatus
    notes: str | None
    created_at: Timestamp
    last_seen_working_at: Timestamp | None = Field(
        default=None, description="the last time a health report saw the flow working"
    )
    health_detail: str | None = Field(default=None, description="what the last health report said")
    version: int = 1
    updated_at: Timestamp | None = None


class IntegrationPatch(Strict):
    """Fields to change; retire with DELETE, report health with POST .../health."""

    data_objects: list[str] | None = Field(default=None, max_length=100)
    direction: Direction | None = None
    method: Method | None = None
    owner: str | None = Field(default=None, max_length=100)
    status: Literal["active", "planned", "broken"] | None = None
    notes: str | None = Field(default=None, max_length=10_000)
    reason: str | None = Field(default=None, max_length=2000, description="why (kept in the history)")

    @field_validator("data_objects")
    @classmethod
    def _objects(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _tags(value)

    @field_validator("data_objects", "direction", "method", "status")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value


class HealthIn(Strict):
    """A health report of an integration, from a monitor or a person."""

    working: bool
    at: Instant | None = Field(default=None, description="when it was observed; now when left out")
    detail: str | None = Field(default=None, max_length=2000)


class IntegrationHistoryEntry(BaseModel):
    seq: int
    version: int
    action: Literal["created", "updated", "health", "retired"]
    actor: str
    at: Timestamp
    changes: dict[str, Any] = Field(description="{field: {from, to}}")
    reason: str | None


# The pages of the lists (`items` + `next_cursor`), parametrized once.
ToolPage = Page[ToolOut]
HistoryPage = Page[HistoryEntry]
ContractPage = Page[ContractOut]
IntegrationPage = Page[IntegrationOut]
IntegrationHistoryPage = Page[IntegrationHistoryEntry]


# --- the YAML catalogue (Backstage catalog-info style) -------------------------------------------


# --- discovery from spend -------------------------------------------------------------------------
