"""Request and response models of the budget API.

Money comes in as decimal strings (`DecimalStr`, floats refused) with an ISO
4217 code (`CurrencyCode`); unknown fields are refused so a typo is a 422
naming it rather than a silently ignored value. Money goes out as decimal
strings in the plan currency's scale ("1250.00").

The answers are built by the domain modules (`plans.plan_view`, `postings.entry_view`, ...)
and documented here; a test checks every answer of a tour against these models, field for
field (they refuse a field they do not name).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.budget.lines import CODE_MAX, CODE_PATTERN, DIMENSION_MAX, MAX_TAGS, NAME_MAX
from shared.bounds import Day, Int32
from shared.errors import Invalid
from shared.money import CurrencyCode, DecimalStr, exponent, to_minor

Period = str  # "2027-03": checked against the plan by the domain, which knows its fiscal year
Code = str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


ControlPeriod = Annotated[
    Literal["month", "quarter", "fiscal_year"],
    Field(description="the overspend check judges available money over the posting's month, fiscal quarter or year"),
]


class PlanIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    fiscal_year: int = Field(ge=2000, le=2100)
    currency: CurrencyCode
    overspend_policy: Literal["block", "require_approval"] = "block"
    approval_threshold: DecimalStr | None = None
    fiscal_year_start: int = Field(default=1, ge=1, le=12, description="the month the fiscal year starts in")
    control_period: ControlPeriod = "month"


class PlanPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    overspend_policy: Literal["block", "require_approval"] | None = None
    approval_threshold: DecimalStr | None = None
    fiscal_year_start: int | None = Field(default=None, ge=1, le=12, description="only while the plan is a draft")
    control_period: ControlPeriod | None = Field(default=None, description="only while the plan is a draft")


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
    campaign_id: str | None = Field(default=None, description="a campaign its line (or an ancestor) funds")


class ActualIn(MoneyIn):
    line_id: str
    commitment_id: str | None = None
    external_ref: str | None = Field(default=None, max_length=200)
    vendor: str | None = Field(default=None, max_length=200)
    campaign_id: str | None = Field(default=None, description="default: the campaign of the commitment it consumes")


class ReverseIn(Strict):
    memo: str | None = Field(default=None, max_length=2000)


class FxRateIn(Strict):
    base: CurrencyCode
    quote: CurrencyCode
    date: Day
    rate: DecimalStr


ERP_COORDINATES = ("company_code", "cost_center", "gl_account", "vendor", "internal_order", "campaign_code")
Coordinate = Annotated[str | None, Field(min_length=1, max_length=200)]


class ErpCoordinates(BaseModel):
    """Where an ERP document sits in the ERP: what the mapping rules match to find its budget line."""

    company_code: Coordinate = None
    cost_center: Coordinate = None
    gl_account: Coordinate = None
    vendor: str | None = Field(default=None, max_length=200)
    internal_order: Coordinate = Field(default=None, description="an internal order")
    campaign_code: Coordinate = Field(default=None, description="the ERP's campaign code")

    def coordinates(self) -> dict[str, str | None]:
        return {k: getattr(self, k) for k in ERP_COORDINATES}

    def has_coordinates(self) -> bool:
        return any(getattr(self, k) is not None for k in ERP_COORDINATES)


class PurchaseOrderIn(ErpCoordinates):
    """ERP purchase order as the gateway forwards it (docs/events.md): a line code, or the coordinates
    the mapping rules turn into one."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["created", "changed", "cancelled"]
    po_number: str = Field(min_length=1, max_length=200)
    revision: Int32
    fiscal_year: int | None = Field(default=None, ge=2000, le=2100)
    budget_line: str | None = Field(default=None, max_length=100)
    period: Period | None = Field(default=None, pattern=r"^[0-9]{4}-[0-9]{2}$")
    amount: DecimalStr | None = None
    currency: CurrencyCode | None = None
    description: str | None = Field(default=None, max_length=2000)

    def missing_for_upsert(self) -> list[str]:
        if self.action == "cancelled":
            return []
        need = ["fiscal_year", "period", "amount", "currency"]
        if not self.has_coordinates():
            need.insert(1, "budget_line")
        return [f for f in need if getattr(self, f) is None]


class InvoiceIn(ErpCoordinates):
    """ERP invoice: a line code, or the coordinates the mapping rules turn into one."""

    model_config = ConfigDict(extra="ignore")

    invoice_number: str = Field(min_length=1, max_length=200)
    po_number: str | None = Field(default=None, max_length=200)
    fiscal_year: int = Field(ge=2000, le=2100)
    budget_line: str | None = Field(default=None, min_length=1, max_length=100)
    period: Period = Field(pattern=r"^[0-9]{4}-[0-9]{2}$")
    amount: DecimalStr
    currency: CurrencyCode

    def missing(self) -> list[str]:
        """What the invoice lacks to name its line: a line code, coordinates or the purchase order it pays."""
        named = self.budget_line is not None or self.has_coordinates() or self.po_number is not None
        return [] if named else ["budget_line"]

    def check_money(self, prefix: str = "") -> None:
        """Invalid (naming `<prefix>amount` or `<prefix>currency`) unless the amount is a positive amount
        of its currency: checked before an invoice is kept in suspense, so only a sound one waits there."""
        if self.amount <= 0:
            raise Invalid.on(f"{prefix}amount", "must be greater than zero", "not_positive")
        exponent(self.currency, f"{prefix}currency")
        to_minor(self.amount, self.currency, f"{prefix}amount")


# ---------------------------------------------------------------- answers

Money = str  # a decimal string in the currency's scale
Status = Literal["draft", "active", "closed"]
Policy = Literal["block", "require_approval"]


class Out(BaseModel):
    """An answer: every field it names, none other (so the models stay true to what is sent)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Balance(Out):
    allocated: Money
    committed: Money
    pending: Money
    spent: Money
    available: Money = Field(description="allocated - committed - pending - spent")
    currency: str


class PlanOut(Out):
    id: str
    name: str
    fiscal_year: int = Field(description="named by the calendar year in which it ends")
    fiscal_year_start: int
    control_period: ControlPeriod
    currency: str
    status: Status
    overspend_policy: Policy
    approval_threshold: Money | None
    periods: list[str] = Field(description="the twelve months of the fiscal year, YYYY-MM")
    version: int
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


class PlanDetail(PlanOut):
    closed_periods: list[str]


class PlanPage(Out):
    items: list[PlanOut]
    next_cursor: str | None = None


class ClosedPeriodOut(Out):
    plan_id: str
    period: str
    closed_by: str
    closed_at: dt.datetime
    status: Literal["closed"]


class Pacing(Out):
    elapsed_share: str = Field(description="share of the period range elapsed, 0-1")
    spent_share: str | None = Field(description="spent / allocated; null without an allocation")
    consumed_share: str | None
    status: Literal["no_budget", "overspending", "underspending", "on_track"]


class SummaryGroup(Balance):
    group: dict[str, str | None] = Field(description="{dimension: value}; empty without group_by")
    pacing: Pacing


class SummaryTotal(Balance):
    pacing: Pacing


class SummaryQuarter(Balance):
    quarter: str = Field(description="fiscal quarter, FY<year it ends>-Q<n>", examples=["FY2027-Q1"])
    periods: list[str] = Field(description="its months inside the range")


class Summary(Out):
    plan_id: str
    currency: str
    from_: str = Field(alias="from")
    to: str
    fiscal_year: str = Field(description="FY<calendar year in which it ends>", examples=["FY2027"])
    group_by: str | None
    groups: list[SummaryGroup]
    quarters: list[SummaryQuarter] = Field(description="the visible lines' own figures per fiscal quarter")
    total: SummaryTotal


class LineOut(Out):
    id: str
    plan_id: str
    code: str
    name: str
    parent_id: str | None
    parent_code: str | None
    depth: int
    dimensions: dict[str, str]
    tags: list[str]
    version: int
    created_at: dt.datetime


class LineDetail(LineOut):
    balance: Balance


class LineBalance(Balance):
    line_id: str
    line_code: str
    from_: str = Field(alias="from")
    to: str


class LineNode(Out):
    id: str
    code: str
    name: str
    parent_id: str | None
    parent_code: str | None
    depth: int
    dimensions: dict[str, str]
    tags: list[str]
    version: int
    balance: Balance = Field(description="the line's whole subtree, as far as the caller may see it")
    children: list[LineNode]


class LineTree(Out):
    plan_id: str
    currency: str
    from_: str = Field(alias="from")
    to: str
    items: list[LineNode]


class Effect(Out):
    """The signed change an entry makes to each figure of its line."""

    allocated: Money
    committed: Money
    pending: Money
    spent: Money


class EntryOut(Out):
    id: str
    group_id: str = Field(description="shared by the entries of one posting")
    plan_id: str
    line_id: str
    line_code: str | None
    period: str
    date: dt.date
    kind: Literal[
        "allocation",
        "transfer_out",
        "transfer_in",
        "commitment",
        "approval",
        "release",
        "consumption",
        "actual",
        "reversal",
    ]
    amount: Money = Field(description="a magnitude, in the plan currency")
    currency: str
    original_amount: Money
    original_currency: str
    fx_rate: str
    effect: Effect
    commitment_id: str | None
    reverses_group_id: str | None
    external_ref: str | None
    vendor: str | None
    memo: str | None
    author: str
    created_at: dt.datetime
    campaign_id: str | None = None


class EntryPage(Out):
    items: list[EntryOut]
    next_cursor: str | None = None


class ActualOut(EntryOut):
    commitment_status: Literal["committed", "closed"] | None = Field(description="of the commitment it consumed")
    consumed: Money = Field(description="how much of the commitment it consumed")
    overspend: bool = Field(description="it took the line below zero available (budget.line.overspent)")


class InvoiceOut(EntryOut):
    """The invoice's actual; a repeated invoice number answers the first one's entry, `replayed`."""

    commitment_status: Literal["committed", "closed"] | None = None
    consumed: Money | None = None
    overspend: bool | None = None
    replayed: bool | None = None
    unknown_po: str | None = Field(
        default=None,
        description="the po_number the budget does not know (yet): the actual was posted without a commitment",
    )


class TransferOut(Out):
    id: str
    plan_id: str
    period: str
    amount: Money
    currency: str
    from_line_id: str
    to_line_id: str
    entries: list[EntryOut] = Field(description="transfer_out, then transfer_in")


class ReversalOut(Out):
    id: str
    reverses_group_id: str
    entries: list[EntryOut]


class CommitmentOut(Out):
    id: str
    plan_id: str
    line_id: str
    line_code: str
    period: str
    date: dt.date
    status: Literal["pending_approval", "committed", "released", "closed"]
    amount: Money
    currency: str
    consumed: Money
    remaining: Money = Field(description="amount - consumed while open, else 0")
    original_amount: Money
    original_currency: str
    fx_rate: str
    reason: Literal["threshold", "over_available"] | None = Field(description="why it waits (or waited) for approval")
    external_ref: str | None
    external_revision: int | None
    vendor: str | None
    memo: str | None
    requested_by: str
    decided_by: str | None
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    campaign_id: str | None = None


class FxRateOut(Out):
    base: str
    quote: str
    date: dt.date
    rate: str = Field(description="units of quote per one base, a decimal string")
    created_by: str


class FxRatePage(Out):
    items: list[FxRateOut]
    next_cursor: str | None = None


class ImportOut(Out):
    plan_id: str
    rows: int
    lines_created: int
    lines_updated: int
    allocations_posted: int


class RefusalOut(Out):
    """A commitment refused when it arrived as an event or ERP document, kept to be retried."""

    id: str
    kind: Literal["contract_commitment", "erp_purchase_order"]
    external_ref: str = Field(description="contract:<contract_id>:<term>, or the purchase order number")
    request: dict[str, Any] = Field(description="the request as it arrived; a retry runs it again")
    fiscal_year: int | None
    line_code: str | None
    plan_id: str | None
    line_id: str | None
    dimensions: dict[str, str | None]
    period: str | None
    amount: Money | None = Field(description="as requested, in `currency`")
    currency: str | None
    reason: str
    code: str = Field(description="the refusing problem's kind: conflict (no money), validation-error (no line)")
    requested_by: str
    status: Literal["refused", "retried"]
    commitment_id: str | None = Field(description="the commitment a successful retry made")
    created_at: dt.datetime
    retried_at: dt.datetime | None
    retried_by: str | None


class RefusalPage(Out):
    items: list[RefusalOut]
