"""Answers about the stack as a whole: impact, the graph and its analysis, the sunset, overlap and cost
reports, discovery from spend, rightsizing and savings, FX rates, and the catalogue as imported and exported.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.registry.events import Lifecycle, TimeClass, Timestamp
from services.registry.schemas import (
    ContractTermsIn,
    IntegrationFields,
    IntegrationOut,
    Owner,
    OwnerOut,
    Strict,
    ToolFields,
    _tags,
)
from shared.money import CurrencyCode, DecimalStr, check_rate

Direction = Literal["one_way", "two_way"]
Method = Literal["api", "file", "webhook", "manual"]
IntegrationStatus = Literal["active", "planned", "broken", "retired"]
Source = Literal["sso", "scim", "manual"]

Name = Field(min_length=1, max_length=200)
NOTICE_DAYS_MAX = 3650  # ten years: a longer notice period is a typo


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
    """A saving in the shape of the KPI service's measurements (POST /kpi/v1/measurements): the one the KPI
    service recorded from `registry.saving.recorded` (same source and external_id)."""

    type: Literal["stack_savings"]
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


class FxRateIn(Strict):
    currency: CurrencyCode
    rate: DecimalStr = Field(gt=0, description="units of the base currency one unit of `currency` is worth")

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: Decimal) -> Decimal:
        return check_rate(value)  # the same rule as the budget service's rates


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


# --- the layers of the stack and the rules between them ------------------------------------------

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
