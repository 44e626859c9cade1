"""Targets pace linearly: sums and counts scale to the whole period, ratios and averages are re-evaluated."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from services.kpi.compute import Acc, Plan, empty_value, merge_filters, scope_filter
from services.kpi.definitions import Definition
from services.kpi.targets import is_at_risk, project
from shared.identity import Principal


def definition(key: str, kind: str = "base", aggregation: str | None = "sum", formula: str | None = None) -> Definition:
    refs = sorted({w for w in (formula or "").replace("/", " ").split() if w.isidentifier()})
    return Definition(
        id=key,
        key=key,
        version=1,
        name=key,
        description="",
        owner=None,
        unit="currency",
        direction="lower_is_better",
        kind=kind,
        measurement_type=key if kind == "base" else None,
        aggregation=aggregation if kind == "base" else None,
        distinct_on=None,
        filter={},
        formula=formula,
        depends_on=refs,
        created_at=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
        created_by="t",
    )


SPEND, LEADS = definition("spend"), definition("leads", aggregation="count")
CPL = definition("cpl", "derived", formula="spend / leads")
AVG = definition("deal_size", aggregation="avg")


def test_additive_bases_scale_to_the_whole_period_and_ratios_keep_their_pace():
    env = {"spend": Decimal(500), "leads": Decimal(20), "cpl": Decimal(25)}
    assert project(Plan(SPEND, {"spend": SPEND}), env, 0.25) == Decimal(2000)
    assert project(Plan(CPL, {"cpl": CPL, "spend": SPEND, "leads": LEADS}), env, 0.25) == Decimal(25)
    assert project(Plan(AVG, {"deal_size": AVG}), {"deal_size": Decimal(7)}, 0.5) == Decimal(7)


def test_no_projection_before_the_period_began():
    assert project(Plan(SPEND, {"spend": SPEND}), {"spend": Decimal(1)}, 0) is None
    assert project(Plan(SPEND, {"spend": SPEND}), {"spend": Decimal(1)}, 1e-12) is None


def test_at_risk_follows_the_direction():
    assert is_at_risk("higher_is_better", Decimal(90), Decimal(100))
    assert not is_at_risk("higher_is_better", Decimal(110), Decimal(100))
    assert is_at_risk("lower_is_better", Decimal(110), Decimal(100))
    assert not is_at_risk("lower_is_better", None, Decimal(100))


def test_a_plan_orders_each_metric_after_what_it_depends_on():
    plan = Plan(CPL, {"cpl": CPL, "spend": SPEND, "leads": LEADS})
    assert [d.key for d in plan.order()] == ["leads", "spend", "cpl"]
    assert {d.key for d in plan.bases} == {"spend", "leads"}


def test_aggregates_add_up_cells_and_empty_cells_are_zero_or_undefined():
    acc = Acc()
    acc.add(2, 3_000_000, 1_000_000, 2_000_000)
    acc.add(1, 6_000_000, 6_000_000, 6_000_000)
    assert acc.value(SPEND) == Decimal(9) and acc.value(LEADS) == Decimal(3) and acc.value(AVG) == Decimal(3)
    assert acc.value(definition("low", aggregation="min")) == Decimal(1)
    assert acc.value(definition("high", aggregation="max")) == Decimal(6)
    assert empty_value(SPEND) == Decimal(0) and empty_value(AVG) is None


def test_scopes_narrow_filters_and_disjoint_filters_match_nothing():
    emea = Principal("eve", frozenset({"analyst"}), frozenset({"region:EMEA"}))
    assert scope_filter(emea) == {"region": {"EMEA"}} and scope_filter(None) == {}
    assert merge_filters({"region": {"EMEA", "NA"}}, scope_filter(emea)) == {"region": {"EMEA"}}
    assert merge_filters({"region": {"NA"}}, scope_filter(emea)) is None
