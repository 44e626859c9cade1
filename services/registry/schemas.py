"""Request and response models of the registry API."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.bounds import Day, Int32
from shared.money import CurrencyCode, DecimalStr, check_rate

Lifecycle = Literal["evaluating", "pilot", "active", "sunsetting", "retired"]
TimeClass = Literal["tolerate", "invest", "migrate", "eliminate"]
BillingPeriod = Literal["monthly", "quarterly", "annual"]
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
    created_at: dt.datetime
    updated_at: dt.datetime


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
    created_at: dt.datetime
    updated_at: dt.datetime


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
