"""Request and response models of the registry API: the typed records the domain returns, too.

Instants are written as the API always wrote them (ISO 8601 with `+00:00`), money as decimal strings.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.registry.events import BillingPeriod, Lifecycle, TimeClass, Timestamp
from shared.bounds import Day, Instant, Int32
from shared.money import CurrencyCode, DecimalStr, check_rate
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


class ImpactedTool(BaseModel):
    tool_id: str
    name: str
    lifecycle: Lifecycle
    depth: int = Field(description="1 for a direct dependant, 2 for a dependant of one, ...")
    via: str | None = Field(description="the tool it depends on through (the one a step closer)")


class ImpactContract(BaseModel):
    contract_id: str
    tool_id: str
    tool_name: str
    annual_cost: str
    currency: str
    end: dt.date
    notice_deadline: dt.date
    auto_renew: bool


class Impact(BaseModel):
    """What retiring (or losing) a tool would touch."""

    tool_id: str
    name: str
    dependants: list[ImpactedTool] = Field(description="every tool that receives data from it, directly or not")
    integrations: list[IntegrationOut] = Field(description="its own integrations that are not retired")
    contracts: list[ImpactContract] = Field(description="active contracts of the tool and of its dependants")
    new_single_points_of_failure: list[str] = Field(
        description="tools that would become single points of failure if this one were retired"
    )


class GraphNode(BaseModel):
    id: str
    name: str
    category: str
    lifecycle: Lifecycle
    owner: OwnerOut


class Graph(BaseModel):
    """Tools that are not retired and the integrations between them that are not retired."""

    nodes: list[GraphNode]
    edges: list[IntegrationOut]


class Violation(BaseModel):
    """An integration that breaks a layer rule."""

    integration_id: str
    from_tool_id: str
    to_tool_id: str
    from_layer: str
    to_layer: str
    rule: int = Field(description="the index of the rule in GET /v1/layers")
    message: str


class Analysis(BaseModel):
    """Tool ids: the data flow's weak spots, and the flows that break the layer rules."""

    orphans: list[str] = Field(description="no owning team and no owning person")
    islands: list[str] = Field(description="no integration at all")
    single_points_of_failure: list[str] = Field(
        description="articulation points of the undirected graph of active integrations between active tools"
    )
    unlayered: list[str] = Field(default_factory=list, description="tools in no layer (rules cannot judge them)")
    violations: list[Violation] = Field(
        default_factory=list, description="integrations (not retired) between live tools that break a layer rule"
    )


LayerKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,49}$")]


class LayerIn(Strict):
    key: LayerKey
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)


class OnlyThrough(Strict):
    """Tools of `layer` exchange data only with tools of `through` (e.g. engagement only through data)."""

    kind: Literal["only_through"]
    layer: LayerKey
    through: LayerKey
    description: str = Field(default="", max_length=2000)


class Forbid(Strict):
    """No data flows from tools of `from_layer` to tools of `to_layer` (a two-way flow goes both ways)."""

    kind: Literal["forbid"]
    from_layer: LayerKey
    to_layer: LayerKey
    description: str = Field(default="", max_length=2000)


Rule = Annotated[OnlyThrough | Forbid, Field(discriminator="kind")]


class LayersIn(Strict):
    layers: list[LayerIn] = Field(max_length=50, description="in stack order, bottom first")
    rules: list[Rule] = Field(default_factory=list, max_length=200)


class Layers(LayersIn):
    version: int = Field(description="0 while the shipped default is in use")
    updated_by: str | None
    updated_at: Timestamp | None
    tools: dict[str, int] = Field(description="tools (not retired) per layer key")


class SunsetItem(BaseModel):
    tool_id: str
    name: str
    lifecycle: Lifecycle
    time_class: TimeClass | None
    layer: str | None
    annual_cost: str
    utilization: float | None
    active_users: int | None
    seats: int | None
    reasons: list[Literal["sunsetting", "eliminate", "migrate", "underused", "shelfware", "overlap"]]
    overlaps_with: list[str] = Field(description="tools that stay and share a capability with this one")
    shared_capabilities: list[str]
    integrations_to_move: list[str] = Field(description="its integrations that are not retired")


class SunsetReport(BaseModel):
    """Candidates to retire, most money at stake first."""

    currency: str
    total_annual_cost: str
    items: list[SunsetItem]


class Overlap(BaseModel):
    capability: str
    tools: list[str]
    tool_names: list[str]
    annual_cost: str
    currency: str


class Overlaps(BaseModel):
    currency: str
    items: list[Overlap]


class CostGroup(BaseModel):
    group: str | None
    annual_cost: str
    tools: int


class Costs(BaseModel):
    group_by: Literal["category", "team"]
    currency: str
    items: list[CostGroup]
    total: str


class FxRateOut(BaseModel):
    base_currency: str
    currency: str
    rate: str
    updated_at: Timestamp


class FxRates(BaseModel):
    base_currency: str
    items: list[FxRateOut]


class ImportResult(BaseModel):
    tools: int
    contracts: int
    integrations: int
    tool_ids: dict[str, str] = Field(description="name -> id of every tool the import created, in its order")


# The pages of the lists (`items` + `next_cursor`), parametrized once.
ToolPage = Page[ToolOut]
HistoryPage = Page[HistoryEntry]
ContractPage = Page[ContractOut]
IntegrationPage = Page[IntegrationOut]
IntegrationHistoryPage = Page[IntegrationHistoryEntry]


class FxRateIn(Strict):
    currency: CurrencyCode
    rate: DecimalStr = Field(gt=0, description="units of the base currency one unit of `currency` is worth")

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: Decimal) -> Decimal:
        return check_rate(value)  # the same rule as the budget service's rates


# --- the YAML catalogue (Backstage catalog-info style) -------------------------------------------


class CatalogIntegration(IntegrationFields):
    to: str = Field(min_length=1, max_length=200, description="name of the receiving tool")


class CatalogSpec(ToolFields):
    contracts: list[ContractTermsIn] = Field(default_factory=list)
    integrations: list[CatalogIntegration] = Field(default_factory=list)


class CatalogMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Name
    description: str | None = Field(default=None, max_length=10_000)  # becomes the tool's notes


class CatalogDocument(Strict):
    apiVersion: Literal["pitcrew.dev/v1"] = "pitcrew.dev/v1"  # noqa: N815 - Backstage's spelling
    kind: Literal["Tool"]
    metadata: CatalogMetadata
    spec: CatalogSpec


# --- discovery from spend -------------------------------------------------------------------------


class SpendAmount(BaseModel):
    currency: str
    amount: str


class SimilarTool(BaseModel):
    tool_id: str
    name: str


class CandidateOut(BaseModel):
    id: str
    vendor: str
    vendor_key: str = Field(description="the vendor name as matched: lower case, no punctuation or legal form")
    status: Literal["open", "accepted", "merged", "ignored"]
    spend: list[SpendAmount] = Field(description="spend to date per currency (the budget plan's)")
    first_seen: dt.date | None
    last_seen: dt.date | None
    lines: int = Field(description="actuals that paid the vendor")
    line_codes: list[str] = Field(description="budget lines that paid it")
    tool_id: str | None = Field(description="the tool it became or was merged into")
    similar_tools: list[SimilarTool] = Field(description="tools whose name or vendor is close: merge candidates")
    decided_by: str | None
    decided_at: Timestamp | None


class Candidates(BaseModel):
    items: list[CandidateOut]


class AcceptIn(Strict):
    """The tool a candidate becomes (its vendor is the candidate's)."""

    name: str | None = Field(default=None, min_length=1, max_length=200, description="default: the vendor")
    category: str = Field(min_length=1, max_length=50)
    capabilities: list[str] = Field(default_factory=list, max_length=100)
    owner: Owner | None = None
    lifecycle: Lifecycle = "active"
    layer: str | None = Field(default=None, min_length=1, max_length=50)

    @field_validator("capabilities")
    @classmethod
    def _caps(cls, value: list[str]) -> list[str]:
        return _tags(value)  # as ToolIn reads them: a bad tag is a 422 here, not a 500 when the tool is built


class MergeIn(Strict):
    tool_id: str = Field(min_length=1, max_length=36)


class IgnoreIn(Strict):
    reason: str | None = Field(default=None, max_length=2000)


class ToolSpendOut(BaseModel):
    """What the budget paid for a tool (actuals with its vendor, an alias, or a merged candidate's)."""

    tool_id: str
    spend: list[SpendAmount]
    lines: int
    first_seen: dt.date | None
    last_seen: dt.date | None


class UsageImportResult(BaseModel):
    rows: int
    tools: int = Field(description="tools the export named that the registry knows")
    people: int
    unknown_tools: dict[str, int] = Field(description="tool names no tool matches, with their rows (not imported)")


class RightsizingItem(BaseModel):
    tool_id: str
    name: str
    seats: int = Field(description="seats of its active contracts")
    active_30: int = Field(description="people who logged in within the last 30 days")
    active_90: int
    recommended_seats: int = Field(description="active in 90 days plus the headroom, rounded up")
    annual_cost: str
    annual_saving: str = Field(description="what the seats above the recommendation cost a year")


class Rightsizing(BaseModel):
    currency: str
    headroom: float
    items: list[RightsizingItem]
    total_annual_saving: str


class Saving(BaseModel):
    contract_id: str
    tool_id: str
    tool_name: str
    kind: Literal["cancellation", "seat_reduction", "renegotiation"]
    period: str = Field(description="YYYY-MM the saving starts")
    annual_saving: str
    seats_before: int | None
    seats_after: int | None


class SavingsPeriod(BaseModel):
    period: str
    annual_saving: str
    cancellations: int
    reductions: int


class KpiMeasurement(BaseModel):
    """A period's saving in the shape of the KPI service's measurements (POST /kpi/v1/measurements)."""

    type: Literal["tool_savings"]
    value: str
    time: str
    dimensions: dict[str, str]
    source: Literal["registry"]
    external_id: str


class SavingsReport(BaseModel):
    currency: str
    periods: list[SavingsPeriod]
    items: list[Saving]
    total_annual_saving: str
    measurements: list[KpiMeasurement]
