"""Request and response models of the KPI's insight routes (api_insights): the semantic query,
anomalies and a journey's path view."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.kpi.schemas import _Strict
from shared.bounds import Day

DimName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
DimValue = Annotated[str, Field(min_length=1, max_length=200)]


class TimeRange(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Day = Field(alias="from")
    to: Day


class OrderBy(_Strict):
    by: str = Field(min_length=1, max_length=64, description="a metric of the query, a dimension, or bucket")
    direction: Literal["asc", "desc"] = "asc"


class QueryIn(_Strict):
    """A semantic query: metrics by dimensions and time, answered from the rollups where it can."""

    metrics: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=20)
    dimensions: list[DimName] = Field(default=[], max_length=5)
    filters: dict[DimName, list[DimValue]] = Field(
        default={}, max_length=10, description="dimension -> values (OR'ed); dimensions are AND'ed"
    )
    grain: Literal["day", "week", "month", "quarter", "fiscal_quarter", "fiscal_year", "all"] = "month"
    time_range: TimeRange
    order: list[OrderBy] = Field(default=[], max_length=5)
    limit: int = Field(default=1000, ge=1, le=10_000)


class QueryColumn(BaseModel):
    name: str
    kind: Literal["time", "dimension", "metric"]
    unit: str | None = None
    version: int | None = Field(default=None, description="a metric's definition version the values come from")


class QueryOut(BaseModel):
    columns: list[QueryColumn]
    rows: list[dict[str, str | None]] = Field(description="one object per bucket and group; values are text")
    read_from: dict[str, str] = Field(description="per metric: rollup, raw or lifecycle (a conversion metric)")
    truncated: bool = Field(description="true when limit cut rows off")


class AnomalyOut(BaseModel):
    id: str
    metric: str
    group: dict[str, str] = Field(description="the dimension values of the group checked ({} for all)")
    day: str
    observed: str
    expected: str = Field(description="the median of the same weekday over the baseline weeks")
    low: str
    high: str
    direction: Literal["above", "below"]
    status: Literal["open", "dismissed"]
    detected_at: str
    dismissed_at: str | None
    dismissed_by: str | None
    note: str | None


class AnomaliesOut(BaseModel):
    items: list[AnomalyOut]


class DismissIn(_Strict):
    note: str | None = Field(default=None, max_length=2000, description="why it was a false alarm")


class AnomalyCheckIn(_Strict):
    day: Day | None = Field(default=None, description="the UTC day to judge (default: yesterday)")


class AnomalyCheckOut(BaseModel):
    detected: list[str] = Field(description="ids of the anomalies found and published by this run")


class PathTouchpoint(BaseModel):
    time: str
    channel: str
    campaign: str | None
    credit: dict[str, str | None] = Field(description="per attribution model, this touchpoint's credit")


class PathConversion(BaseModel):
    conversion_id: str
    time: str
    value: str | None
    unattributed: bool = Field(description="no touchpoint within lookback_days before it")
    touchpoints: list[PathTouchpoint]


class JourneyOut(BaseModel):
    journey_id: str
    lookback_days: int
    half_life_days: float
    conversions: list[PathConversion]
