"""Request and response models of the ERP mapping (rules, the dry run) and the suspense queue; the
ERP documents themselves (`PurchaseOrderIn`, `InvoiceIn`) are in services.budget.schemas, which the
gateway checks webhooks against."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field, RootModel

from services.budget.lines import CODE_MAX, CODE_PATTERN
from services.budget.schemas import Code, Coordinate, InvoiceOut, Money, Out, RefusalOut, Strict


class MappingRuleIn(Strict):
    """A mapping rule: the conditions a document's coordinates must meet (null: any; "6*": a prefix)."""

    priority: int = Field(ge=0, le=1_000_000, description="lower is tried first")
    company_code: Coordinate = None
    cost_center: Coordinate = None
    gl_account: Coordinate = None
    vendor: Coordinate = None
    internal_order: Coordinate = None
    campaign_code: Coordinate = None
    line_code: Code = Field(min_length=1, max_length=CODE_MAX, pattern=CODE_PATTERN)
    description: str | None = Field(default=None, max_length=2000)


class MappingTestIn(Strict):
    """A document's coordinates (and, to name the line, its fiscal year)."""

    fiscal_year: int | None = Field(default=None, ge=2000, le=2100)
    company_code: Coordinate = None
    cost_center: Coordinate = None
    gl_account: Coordinate = None
    vendor: Coordinate = None
    internal_order: Coordinate = None
    campaign_code: Coordinate = None


class SuspenseAssignIn(Strict):
    budget_line: Code | None = Field(
        default=None, max_length=CODE_MAX, description="the line code; absent: the mapping rules decide again"
    )


class MappingRuleOut(Out):
    id: str
    priority: int
    company_code: str | None
    cost_center: str | None
    gl_account: str | None
    vendor: str | None
    internal_order: str | None
    campaign_code: str | None
    line_code: str
    description: str | None
    version: int = Field(description="send it as If-Match to change the rule")
    created_by: str
    created_at: dt.datetime
    updated_by: str | None
    updated_at: dt.datetime | None


class MappingRulePage(Out):
    items: list[MappingRuleOut] = Field(description="in the order they are tried")


class MappingCheck(Out):
    rule_id: str
    priority: int
    matched: bool
    why: str


class MappedLine(Out):
    id: str
    plan_id: str
    code: str
    name: str


class MappingTestOut(Out):
    matched: bool
    line_code: str | None
    line: MappedLine | None = Field(description="the line in the active plan of fiscal_year, when given and found")
    rule: MappingRuleOut | None
    reason: str
    checked: list[MappingCheck] = Field(description="each rule tried, in order, up to the one that matched")


class SuspenseOut(Out):
    """An ERP document that named no line and matched no mapping rule, waiting to be mapped or assigned."""

    id: str
    kind: Literal["purchase_order", "invoice"]
    document_ref: str = Field(description="the purchase order or invoice number")
    request: dict[str, Any] = Field(description="the document as it arrived; assigning posts it")
    coordinates: dict[str, str | None]
    amount: Money | None
    currency: str | None
    reason: str
    received_by: str
    status: Literal["waiting", "posted"]
    line_code: str | None
    result_id: str | None = Field(description="the commitment (order) or actual entry (invoice) it made")
    created_at: dt.datetime
    updated_at: dt.datetime
    posted_by: str | None


class SuspensePage(Out):
    items: list[SuspenseOut]


class OrderHeld(RootModel[RefusalOut | SuspenseOut]):
    """A purchase order the budget could not take as it came: its commitment was refused (a refusal,
    kept to be retried), or it named no line and matched no mapping rule (a suspense item)."""


class InvoiceKept(RootModel[InvoiceOut | SuspenseOut]):
    """An invoice the budget kept although it could not take it as it came: posted on its line without
    a commitment (its purchase order is not known yet: `unknown_po`), or waiting in suspense."""
