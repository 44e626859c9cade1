"""Request models of the kpi API (answers are plain dicts shaped by the domain)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.bounds import Day, Instant
from shared.money import DecimalStr

Unit = Literal["count", "currency", "percent", "duration"]
Direction = Literal["higher_is_better", "lower_is_better"]
Aggregation = Literal["sum", "count", "count_distinct", "avg", "min", "max"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricIn(_Strict):
    """A base metric (aggregation of a measurement type) or a derived one (a formula over metrics)."""

    key: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    owner: str | None = Field(default=None, max_length=200)
    unit: Unit
    direction: Direction
    kind: Literal["base", "derived"]
    measurement_type: str | None = Field(default=None, max_length=64)
    aggregation: Aggregation | None = None
    distinct_on: str | None = Field(default=None, max_length=64)
    filter: dict[str, str] | None = None
    formula: str | None = Field(default=None, max_length=2000)


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


class TargetIn(_Strict):
    metric: str = Field(min_length=1, max_length=64)
    period: str = Field(description="2027, 2027-Q1 or 2027-03")
    value: DecimalStr
    filter: dict[str, str] | None = None


class RebuildIn(_Strict):
    types: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=1000)
    from_: Day | None = Field(default=None, alias="from")
    to: Day | None = None
