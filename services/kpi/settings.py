"""Settings of the kpi service (env prefix PITCREW_KPI_)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PITCREW_KPI_", extra="ignore")

    service_name: str = "kpi"
    port: int = 8003
    # A measurement whose time is older than this when it arrives counts as a late arrival.
    late_after_hours: float = 48.0
    # How often targets are checked against their linear pacing projection (0 turns it off).
    target_check_seconds: float = 300.0
    # No at-risk verdict before this fraction of the period has elapsed (too little data).
    target_min_elapsed: float = 0.1
    # Default look-back of GET /v1/quality.
    quality_window_days: int = 7
    # Seed the governed metric catalog at start-up (idempotent).
    seed_catalog: bool = True
    # The organisation's fiscal-year start month (1 = January, the budget's plans' default): fiscal_quarter and
    # fiscal_year grains and FY2027 / FY2027-Q1 periods; a fiscal year is named by the calendar year it ends in.
    fiscal_year_start: Annotated[int, Field(ge=1, le=12)] = 1
    # Attribution's bounds per request (a 422 beyond them; docs/kpi.md#limits): conversions in the range,
    # touchpoints in their look-back windows, steps (touchpoints on paths x models) and seconds of computation.
    attribution_max_conversions: int = 200_000
    attribution_max_touchpoints: int = 500_000
    attribution_max_steps: int = 20_000_000
    attribution_seconds: float = 20.0
    # The bootstrap interval's bounds (attribution ci=): resamples per request, and resamples x journeys
    # steps (numpy: about 20 ns of CPU each, 10**8 in about 2 s); attribution_seconds bounds its time too.
    attribution_max_resamples: int = 10_000
    attribution_max_bootstrap_steps: int = 300_000_000
    # Cohort conversions' bounds per request (a 422 beyond them; docs/kpi.md#cohorts): entities that reached
    # the first stage in the period, and seconds of computation.
    cohort_max_entities: int = 1_000_000
    cohort_seconds: float = 20.0
    # The daily anomaly check (docs/kpi.md#anomalies): the metrics it watches (comma-separated keys; empty:
    # none), an optional dimension to check per value of, the same-weekday weeks of the baseline, how many
    # robust spreads from the median count as an anomaly, and how often it runs (0 turns it off). Each run
    # judges the day before (UTC); a day is judged once per metric and group.
    anomaly_metrics: str = ""
    anomaly_group_by: str | None = None
    anomaly_weeks: Annotated[int, Field(ge=4, le=52)] = 8
    anomaly_threshold: Annotated[Decimal, Field(gt=0, le=100)] = Decimal("3.5")
    anomaly_check_seconds: float = 3600.0
