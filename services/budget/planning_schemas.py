"""Request and response models of plan versions (forecasts and scenarios), the variance report, the
phasing helper and campaigns."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from services.budget.lines import CODE_MAX, CODE_PATTERN, NAME_MAX
from services.budget.schemas import Code, Money, Out, Period, Strict
from shared.bounds import Day
from shared.money import CurrencyCode, DecimalStr


class VersionAmountIn(Strict):
    line_id: str
    period: Period
    amount: DecimalStr
    currency: CurrencyCode


class VersionIn(Strict):
    kind: Literal["forecast", "scenario"]
    name: str = Field(min_length=1, max_length=200)
    source: str | None = Field(
        default=None,
        max_length=60,
        description="what to copy: budget, forecast:latest or a version id (default: a forecast copies the "
        "latest forecast, else the budget; a scenario the budget)",
    )
    as_of: Period | None = Field(
        default=None, description="forecasts: the last month taken from actuals (default: the current month)"
    )
    amounts: list[VersionAmountIn] = Field(default_factory=list, max_length=10_000)


class VersionAmountsIn(Strict):
    amounts: list[VersionAmountIn] = Field(min_length=1, max_length=10_000)


class PromoteIn(Strict):
    to: Literal["forecast", "budget"] = Field(
        description="budget: admins only; replaces the locked budget and posts the differences as allocations"
    )


class VersionAmountOut(Out):
    line_id: str
    line_code: str
    period: str
    amount: Money


class VersionOut(Out):
    id: str
    plan_id: str
    seq: int = Field(description="1, 2, ... per plan; forecast:latest is the forecast with the highest")
    kind: Literal["budget", "forecast", "scenario"] = Field(
        description="budget: recorded at activation (or an admin's promoted scenario), locked"
    )
    name: str
    as_of: str | None
    source: str = Field(
        description="what it was copied from: budget, a version id; a budget: activation or the scenario"
    )
    status: Literal["open", "promoted", "locked", "superseded"] = Field(
        description="forecasts and scenarios: open or promoted; a budget: locked (the current one) or superseded"
    )
    promoted_to: Literal["forecast", "budget"] | None
    promoted_version_id: str | None = Field(description="the forecast or budget version a promotion made")
    promoted_by: str | None
    promoted_at: dt.datetime | None
    created_by: str
    created_at: dt.datetime
    currency: str
    total: Money


class VersionDetail(VersionOut):
    amounts: list[VersionAmountOut]


class VersionPage(Out):
    items: list[VersionOut]


class Variance(Out):
    of: str
    against: str
    absolute: Money = Field(description="of - against")
    percent: str | None = Field(description="(of - against) / against x 100, two places; null when against is 0")


class VarianceRow(Out):
    figures: dict[str, Money] = Field(description="label -> amount: budget, actual, committed, forecast:<seq>, ...")
    variances: list[Variance]


class VariancePeriod(VarianceRow):
    period: str = Field(description="the month (2027-03), fiscal quarter (FY2027-Q1) or fiscal year (FY2027)")
    months: list[str] = Field(description="the months it sums, within from..to")


class VarianceGroup(Out):
    group: str | None = Field(description="the line code, or the dimension's value")
    periods: list[VariancePeriod]
    total: VarianceRow


class VarianceOut(Out):
    plan_id: str
    currency: str
    from_: str = Field(alias="from")
    to: str
    compare: list[str]
    group_by: str
    period: Literal["month", "fiscal_quarter", "fiscal_year"] = Field(description="what each group's rows are")
    items: list[VarianceGroup]
    total: VarianceRow


class PhasingIn(Strict):
    amount: DecimalStr = Field(description="the annual amount")
    currency: CurrencyCode
    method: Literal["even", "weights", "seasonality"] = "even"
    weights: list[DecimalStr] | None = Field(default=None, min_length=12, max_length=12)
    line_id: str | None = Field(
        default=None, description="the months of its plan; seasonality: its namesake's actuals last fiscal year"
    )


class PhasedMonth(Out):
    index: int = Field(description="1 for the first month of the fiscal year")
    period: str | None
    amount: Money


class PhasingOut(Out):
    amount: Money
    currency: str
    method: str
    months: list[PhasedMonth]


class CampaignIn(Strict):
    plan_id: str
    code: Code = Field(min_length=1, max_length=CODE_MAX, pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=NAME_MAX)
    starts_on: Day
    ends_on: Day
    owner: str | None = Field(default=None, max_length=200)
    status: Literal["planned", "active", "completed", "cancelled"] = "planned"
    planned_cost: DecimalStr
    currency: CurrencyCode
    line_ids: list[str] = Field(default_factory=list, max_length=200, description="the lines that fund it")


class CampaignOut(Out):
    id: str
    plan_id: str
    code: str
    name: str
    starts_on: dt.date
    ends_on: dt.date
    owner: str | None
    status: Literal["planned", "active", "completed", "cancelled"]
    line_ids: list[str]
    currency: str
    planned_cost: Money
    committed: Money = Field(description="open commitments naming it (approved or waiting)")
    spent: Money = Field(description="actuals naming it (reversals deducted)")
    remaining: Money = Field(description="planned_cost - committed - spent")
    created_by: str
    created_at: dt.datetime


class CampaignPage(Out):
    items: list[CampaignOut]


class ActivityIn(Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    starts_on: Day
    ends_on: Day
    planned_cost: DecimalStr
    currency: CurrencyCode


class ActivityOut(Out):
    id: str
    campaign_id: str
    name: str
    starts_on: dt.date
    ends_on: dt.date
    planned_cost: Money
    currency: str
    created_by: str
    created_at: dt.datetime


class ActivityPage(Out):
    items: list[ActivityOut]
    planned_cost: Money = Field(description="the activities' planned cost together")
    unplanned: Money = Field(description="the campaign's planned cost not yet given to an activity")


# ---------------------------------------------------------------- bottom-up requests

REQUEST_ITEMS_MAX = 500
RequestStatus = Literal["pending_approval", "approved", "rejected", "cancelled", "failed"]


class RequestItemIn(Strict):
    line_id: str = Field(max_length=36)
    period: Period = Field(description="a month of the plan, e.g. 2028-01")
    amount: DecimalStr = Field(description="more than zero, in the request's currency (the plan's)")


class RequestIn(Strict):
    plan_id: str = Field(max_length=36, description="the plan asked for (next year's, a draft or active)")
    currency: CurrencyCode = Field(description="the plan currency")
    justification: str = Field(min_length=1, max_length=4000)
    items: list[RequestItemIn] = Field(min_length=1, max_length=REQUEST_ITEMS_MAX)


class RequestItemOut(Out):
    line_id: str
    line_code: str
    period: str
    amount: Money
    entry_id: str | None = Field(description="the allocation approval posted")


class RequestStep(Out):
    at: dt.datetime
    actor: str
    action: Literal["submitted", "approved", "rejected", "cancelled", "failed"]
    comment: str | None = Field(description="the decision's comment, or why approved amounts could not be posted")


class RequestOut(Out):
    id: str
    plan_id: str
    fiscal_year: int
    status: RequestStatus
    justification: str
    currency: str
    total: Money
    requested_by: str
    instance_id: str | None = Field(description="the workflow instance that decided it")
    decided_by: str | None
    decided_at: dt.datetime | None
    reason: str | None = Field(description="rejected: the comment; failed: why the allocations were refused")
    created_at: dt.datetime
    items: list[RequestItemOut]
    history: list[RequestStep]


class RequestPage(Out):
    items: list[RequestOut]
