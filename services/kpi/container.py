"""The KPI service's domain objects, built once per process from its settings (`ServiceSpec.build`).

Routes reach them through the `domain` dependency, event handlers and the target check through
`runtime.domain`. Definitions, series, targets and quality need no configuration: they are
plain functions of `definitions`, `series`, `targets` and `quality`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fastapi import Request

from services.kpi import anomalies
from services.kpi.attribution import Limits
from services.kpi.cohorts import CohortLimits
from services.kpi.ingest import Ingestor
from services.kpi.raw import tune_sqlite
from services.kpi.settings import Settings
from shared.app import Runtime


@dataclass(frozen=True)
class Kpi:
    ingestor: Ingestor
    attribution_limits: Limits
    target_check_seconds: float
    target_min_elapsed: float
    quality_window: dt.timedelta
    seed_catalog: bool
    fiscal_start: int = 1  # the fiscal year's first month (PITCREW_KPI_FISCAL_YEAR_START)
    cohort_limits: CohortLimits = CohortLimits()
    anomaly: anomalies.Settings = anomalies.Settings()
    anomaly_check_seconds: float = 0.0


def build(runtime: Runtime) -> Kpi:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    tune_sqlite(runtime.db)  # built before start-up: no connection is open yet
    return Kpi(
        ingestor=Ingestor(late_after=dt.timedelta(hours=settings.late_after_hours)),
        attribution_limits=Limits(
            settings.attribution_max_conversions,
            settings.attribution_max_touchpoints,
            settings.attribution_max_steps,
            settings.attribution_seconds,
            settings.attribution_max_resamples,
            settings.attribution_max_bootstrap_steps,
        ),
        target_check_seconds=settings.target_check_seconds,
        target_min_elapsed=settings.target_min_elapsed,
        quality_window=dt.timedelta(days=settings.quality_window_days),
        seed_catalog=settings.seed_catalog,
        fiscal_start=settings.fiscal_year_start,
        cohort_limits=CohortLimits(settings.cohort_max_entities, settings.cohort_seconds),
        anomaly=anomalies.Settings(
            tuple(k.strip() for k in settings.anomaly_metrics.split(",") if k.strip()),
            settings.anomaly_group_by or None,
            settings.anomaly_weeks,
            settings.anomaly_threshold,
        ),
        anomaly_check_seconds=settings.anomaly_check_seconds,
    )


async def domain(request: Request) -> Kpi:
    """FastAPI dependency: the KPI service's domain objects (async and request-only, as the fast lane needs)."""
    kpi: Kpi = request.app.state.runtime.domain
    return kpi
