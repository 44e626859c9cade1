"""Request and response models of the budget API.

Money comes in as decimal strings (`DecimalStr`, floats refused) with an ISO
4217 code (`CurrencyCode`); unknown fields are refused so a typo is a 422
naming it rather than a silently ignored value.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.budget.ledger import CODE_MAX, CODE_PATTERN, DIMENSION_MAX, MAX_TAGS, NAME_MAX
from shared.bounds import Day, Int32
from shared.money import CurrencyCode, DecimalStr

Period = str  # "2027-03": checked against the plan by the domain, which knows its fiscal year
Code = str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    fiscal_year: int = Field(ge=2000, le=2100)
    currency: CurrencyCode
    overspend_policy: Literal["block", "require_approval"] = "block"
    approval_threshold: DecimalStr | None = None


class PlanPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    overspend_policy: Literal["block", "require_approval"] | None = None
    approval_threshold: DecimalStr | None = None


class Dimensions(Strict):
    region: str | None = Field(default=None, max_length=DIMENSION_MAX["region"])
    channel: str | None = Field(default=None, max_length=DIMENSION_MAX["channel"])
    campaign: str | None = Field(default=None, max_length=DIMENSION_MAX["campaign"])
    cost_center: str | None = Field(default=None, max_length=DIMENSION_MAX["cost_center"])
    owner: str | None = Field(default=None, max_length=DIMENSION_MAX["owner"])


class LineIn(Strict):
    code: Code = Field(min_length=1, max_length=CODE_MAX, pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=NAME_MAX)
    parent_code: Code | None = Field(default=None, max_length=CODE_MAX)
    parent_id: str | None = None
    dimensions: Dimensions = Field(default_factory=Dimensions)
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)


class MoneyIn(Strict):
    period: Period = Field(pattern=r"^[0-9]{4}-[0-9]{2}$", examples=["2027-03"])
    amount: DecimalStr = Field(examples=["50000.00"])
    currency: CurrencyCode
    date: dt.date | None = Field(default=None, description="Defaults to the first day of the period.")
    memo: str | None = Field(default=None, max_length=2000)


class AllocationIn(MoneyIn):
    line_id: str
    external_ref: str | None = Field(default=None, max_length=200)


class TransferIn(MoneyIn):
    from_line_id: str
    to_line_id: str


class CommitmentIn(MoneyIn):
    line_id: str
    external_ref: str | None = Field(default=None, max_length=200)
    vendor: str | None = Field(default=None, max_length=200)


class ActualIn(MoneyIn):
    line_id: str
    commitment_id: str | None = None
    external_ref: str | None = Field(default=None, max_length=200)
    vendor: str | None = Field(default=None, max_length=200)


class ReverseIn(Strict):
    memo: str | None = Field(default=None, max_length=2000)


class FxRateIn(Strict):
    base: CurrencyCode
    quote: CurrencyCode
    date: Day
    rate: DecimalStr


class PurchaseOrderIn(BaseModel):
    """ERP purchase order as the gateway forwards it (docs/events.md)."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["created", "changed", "cancelled"]
    po_number: str = Field(min_length=1, max_length=200)
    revision: Int32
    fiscal_year: int | None = Field(default=None, ge=2000, le=2100)
    budget_line: str | None = Field(default=None, max_length=100)
    period: Period | None = Field(default=None, pattern=r"^[0-9]{4}-[0-9]{2}$")
    amount: DecimalStr | None = None
    currency: CurrencyCode | None = None
    vendor: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)

    def missing_for_upsert(self) -> list[str]:
        need = ("fiscal_year", "budget_line", "period", "amount", "currency")
        return [f for f in need if getattr(self, f) is None] if self.action != "cancelled" else []


class InvoiceIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    invoice_number: str = Field(min_length=1, max_length=200)
    po_number: str | None = Field(default=None, max_length=200)
    fiscal_year: int = Field(ge=2000, le=2100)
    budget_line: str = Field(min_length=1, max_length=100)
    period: Period = Field(pattern=r"^[0-9]{4}-[0-9]{2}$")
    amount: DecimalStr
    currency: CurrencyCode
    vendor: str | None = Field(default=None, max_length=200)


class Balance(BaseModel):
    allocated: str
    committed: str
    pending: str
    spent: str
    available: str
    currency: str


class PageOut(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = None
