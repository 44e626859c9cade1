"""Request and response models of the KPI API.

The domain shapes its answers as plain dicts (the hot read paths build thousands of points);
the response models here document them in the OpenAPI document and check them on the way out.
Optional keys that an answer leaves out (a point without a target) are left out of the JSON too:
their routes answer with `response_model_exclude_unset`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.kpi.values import canonical_dims
from shared.bounds import Day, Instant
from shared.money import DecimalStr
from shared.pagination import Page

Unit = Literal["count", "currency", "percent", "duration"]
Direction = Literal["higher_is_better", "lower_is_better"]
Aggregation = Literal["sum", "count", "count_distinct", "avg", "min", "max"]
Stage = Literal["lead", "mql", "sql", "opportunity", "won", "lost"]
Kind = Literal["base", "derived", "conversion", "cumulative"]
CumulativeWindow = Literal["month_to_date", "quarter_to_date", "year_to_date", "fiscal_year_to_date", "trailing"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricIn(_Strict):
    """A base metric (aggregation of a measurement type), a derived one (a formula over metrics), a
    conversion (a cohort rate over CRM lifecycle facts: from_stage, to_stage, window_days; unit percent) or
    a cumulative one (base_metric over a running window: cumulative, and window_days when trailing)."""

    key: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    owner: str | None = Field(default=None, max_length=200)
    unit: Unit
    direction: Direction
    kind: Kind
    measurement_type: str | None = Field(default=None, max_length=64)
    aggregation: Aggregation | None = None
    distinct_on: str | None = Field(default=None, max_length=64)
    filter: dict[str, str] | None = None
    formula: str | None = Field(default=None, max_length=2000)
    from_stage: Stage | None = Field(default=None, description="conversion: the stage that enters the cohort")
    to_stage: Stage | None = Field(default=None, description="conversion: the stage a conversion reaches")
    window_days: int | None = Field(
        default=None,
        description="conversion: days after from_stage within which to_stage counts (1 to 3650; 90); "
        "cumulative with cumulative=trailing: the trailing window's days (1 to 366)",
    )
    base_metric: str | None = Field(
        default=None, max_length=64, description="cumulative: the base or derived metric run over the window"
    )
    cumulative: CumulativeWindow | None = Field(
        default=None, description="cumulative: the running window, to date since a period's start or trailing"
    )


class MetricPut(MetricIn):
    key: str | None = Field(default=None, max_length=64)  # type: ignore[assignment]


class MeasurementsIn(BaseModel):
    """Items are judged one by one by the domain, so a bad item is reported, not fatal."""

    items: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class TouchpointIn(_Strict):
    journey_id: str = Field(min_length=1, max_length=200)
    time: Instant
    channel: str = Field(min_length=1, max_length=100)
    campaign: str | None = Field(default=None, max_length=200)


class TouchpointsIn(_Strict):
    items: list[TouchpointIn] = Field(min_length=1, max_length=10_000)


class ConversionIn(_Strict):
    journey_id: str = Field(min_length=1, max_length=200)
    time: Instant
    value: DecimalStr
    dimensions: dict[str, str] | None = None


class ConversionsIn(_Strict):
    items: list[ConversionIn] = Field(min_length=1, max_length=10_000)


class LifecycleFactIn(_Strict):
    """An entity (a lead, followed through to its opportunity) reached a stage of the funnel."""

    entity_id: str = Field(min_length=1, max_length=200)
    stage: Stage
    time: Instant
    dimensions: dict[str, str] | None = None
    source: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("dimensions")
    @classmethod
    def _dims(cls, v: dict[str, str] | None) -> dict[str, str]:
        return canonical_dims(v)  # KPI's one rule for dimension names and values


class LifecycleIn(_Strict):
    items: list[LifecycleFactIn] = Field(min_length=1, max_length=10_000)


class LifecycleOut(BaseModel):
    accepted: int = Field(description="facts stored")
    duplicates: int = Field(description="facts whose entity had reached that stage before (the first one stays)")


class TargetIn(_Strict):
    metric: str = Field(min_length=1, max_length=64)
    period: str = Field(description="2027, 2027-Q1, 2027-03, FY2027 or FY2027-Q1")
    value: DecimalStr | None = Field(default=None, description="the target value (or change_vs_last_year)")
    change_vs_last_year: DecimalStr | None = Field(
        default=None, description="the target as a change against the same period last year: 0.10 = +10 %"
    )
    filter: dict[str, str] | None = None


class RebuildIn(_Strict):
    types: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=1000)
    from_: Day | None = Field(default=None, alias="from")
    to: Day | None = None


# ---------------------------------------------------------------- answers


class DefinitionOut(BaseModel):
    id: str
    key: str
    version: int
    name: str
    description: str
    owner: str | None
    unit: Unit
    direction: Direction
    kind: Kind
    measurement_type: str | None
    aggregation: Aggregation | None
    distinct_on: str | None
    filter: dict[str, str]
    formula: str | None
    depends_on: list[str] = Field(description="the metrics a derived metric's formula names")
    created_at: str = Field(description="ISO 8601 instant")
    created_by: str
    from_stage: Stage | None = Field(description="conversion metrics: the stage that enters the cohort")
    to_stage: Stage | None = Field(description="conversion metrics: the stage a conversion reaches")
    window_days: int | None = Field(
        description="conversion metrics: the days within which to_stage counts; cumulative trailing: its days"
    )
    base_metric: str | None = Field(default=None, description="cumulative metrics: the metric run over the window")
    cumulative: CumulativeWindow | None = Field(default=None, description="cumulative metrics: the running window")


DefinitionPage = Page[DefinitionOut]


class Change(BaseModel):
    value: str | None = Field(description="the earlier value; null where undefined")
    change: str | None = Field(description="this value - the earlier one; null when either is undefined")
    percent_change: str | None = Field(
        description="change / |earlier value| as a fraction (0.25 = +25 %); null when the earlier value is 0 or null"
    )


class BucketChange(Change):
    bucket: str = Field(description="the first local date of the earlier bucket")


class PeriodChange(Change):
    model_config = ConfigDict(populate_by_name=True)

    period: str = Field(description="the earlier period (2026-Q4, FY2026-Q1, ...)")
    from_: str = Field(alias="from")
    to: str = Field(description="its last day counted (while the period runs: as many days as have elapsed)")


class CohortCell(BaseModel):
    entered: int = Field(description="entities that reached from_stage in the bucket (or period)")
    converted: int = Field(description="of them, those that reached to_stage within window_days")
    median_days: str | None = Field(description="median days to convert (nearest rank, 2 places); null: none")
    p90_days: str | None = Field(description="90th percentile of the days to convert; null: none converted")
    complete: bool = Field(description="every window of the bucket has ended (the rate can no longer grow)")


class Point(BaseModel):
    bucket: str = Field(description="the first local date of the bucket")
    period: str | None = Field(default=None, description="fiscal grains only: FY2027-Q1, FY2027")
    value: str | None = Field(description="a decimal string; null where the metric is undefined")
    target: str | None = Field(default=None, description="only on month, quarter and fiscal buckets with a target")
    variance: str | None = None
    attainment: str | None = None
    compare: dict[Literal["previous_period", "last_year"], BucketChange] | None = Field(
        default=None, description="only with compare="
    )
    cohort: CohortCell | None = Field(default=None, description="conversion metrics only: the bucket's cohort")


class SeriesGroup(BaseModel):
    group: dict[str, str | None]
    points: list[Point]


class SeriesOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    metric: str
    version: int
    unit: Unit
    grain: str
    from_: str = Field(alias="from")
    to: str
    tz: str
    read_from: Literal["rollup", "raw", "lifecycle"] = Field(description="lifecycle: a conversion metric")
    cumulative: str | None = Field(default=None, description="only with cumulative=: the running window's kind")
    trailing_days: int | None = Field(default=None, description="only with cumulative=trailing")
    series: list[SeriesGroup]


class RejectedItem(BaseModel):
    index: int
    reason: str = Field(description="what is wrong, naming the field")


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[RejectedItem]


class RebuildOut(BaseModel):
    rollup_rows: int = Field(description="daily rollup rows written")


class QualityRejected(BaseModel):
    at: str
    index: int
    reason: str


class QualityRejections(BaseModel):
    count: int
    items: list[QualityRejected]


class QualityBatch(BaseModel):
    at: str
    source: str | None
    count: int
    sample: list[dict[str, Any]]
    max_lateness_hours: float | None = Field(default=None, description="late arrivals only")


class QualityBatches(BaseModel):
    count: int
    batches: list[QualityBatch]


class FirstSeen(BaseModel):
    dimension: str = Field(description='"type" for a measurement type')
    value: str
    first_seen_at: str
    first_source: str
    similar_to: list[str] = Field(description="older values that differ only in case and punctuation")
    used_by_metric: bool | None = Field(default=None, description="measurement types only")


class QualityOut(BaseModel):
    since: str
    rejected: QualityRejections
    duplicates_dropped: QualityBatches
    late_arrivals: QualityBatches
    new_measurement_types: list[FirstSeen]
    new_dimension_values: list[FirstSeen]


class TargetBasis(BaseModel):
    kind: Literal["last_year"]
    period: str = Field(description="the period the change is against")
    value: str = Field(description="its value when the target was set")
    change: str = Field(description="the relative change asked for (0.10 = +10 %)")


class TargetOut(BaseModel):
    id: str
    metric: str
    period: str
    filter: dict[str, str]
    value: str
    version: int
    created_at: str
    created_by: str
    at_risk_published_at: str | None
    basis: TargetBasis | None = Field(default=None, description="how a target set as a change was computed")


TargetPage = Page[TargetOut]


class EvaluateOut(BaseModel):
    published: list[str] = Field(description="ids of the targets kpi.target.at_risk was published for")


class ScorecardItem(BaseModel):
    metric: str
    name: str
    version: int = Field(description="the definition version the values were computed with")
    unit: Unit
    direction: Direction
    actual: str | None
    target: str | None
    variance: str | None
    attainment: str | None
    projected: str | None
    at_risk: bool
    target_id: str | None
    compare: dict[Literal["previous_period", "last_year"], PeriodChange] | None = Field(
        default=None, description="only with compare="
    )
    cohort: CohortCell | None = Field(default=None, description="conversion metrics only: the period's cohort")


class ScorecardOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    period: str
    from_: str = Field(alias="from")
    to: str
    elapsed: float
    items: list[ScorecardItem]


class AcceptedOut(BaseModel):
    accepted: int


class Interval(BaseModel):
    low: str | None
    high: str | None


class Credit(BaseModel):
    channel: str | None = Field(default=None, description="with group_by=channel (the default)")
    campaign: str | None = Field(default=None, description="with group_by=campaign")
    interval: Interval | None = Field(
        default=None,
        description="with ci=: the bootstrap interval of the chosen model's credit (the same as "
        "by_model_interval[model]); a percentile interval widened, when needed, to hold the point estimate",
    )
    credit: str | None
    min: str | None
    max: str | None
    by_model: dict[str, str | None]
    by_model_interval: dict[str, Interval] | None = Field(
        default=None,
        description="with ci=: each model's bootstrap interval beside its credit in by_model, all from the "
        "same resamples of journeys; the nearest-rank percentile interval, widened to hold the model's "
        "credit when that falls outside it (possible with very few journeys or resamples)",
    )
    range_interval: Interval | None = Field(
        default=None,
        description="with ci=: beside the range across models (min, max): the lowest low and the highest "
        "high of the models' intervals",
    )


class AttributionOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    model: str
    from_: str = Field(alias="from")
    to: str
    half_life_days: float
    lookback_days: int
    conversions: int
    credits: list[Credit]
    total: str | None
    group_by: Literal["channel", "campaign"]
    ci: float | None = Field(default=None, description="with ci=: the interval's confidence level")
    resamples: int | None = Field(default=None, description="with ci=: bootstrap resamples drawn")
    seed: int | None = Field(default=None, description="with ci=: the seed that reproduces the interval")
    journeys: int | None = Field(default=None, description="with ci=: journeys resampled")


class CohortItem(BaseModel):
    group: dict[str, str | None] = Field(description="the group_by dimensions' values ({} without group_by)")
    entered: int = Field(description="entities that reached from_stage in the period")
    converted: int = Field(description="of them, those that reached to_stage within window_days")
    rate: str = Field(description="converted / entered, a decimal string (4 places)")
    median_days: str | None = Field(description="median days to convert (nearest rank; null: none converted)")
    p90_days: str | None = Field(description="90th percentile of days to convert (nearest rank)")


class CohortOut(BaseModel):
    from_stage: str
    to_stage: str
    period: str
    from_: str = Field(alias="from")
    to: str
    window_days: int
    items: list[CohortItem]
