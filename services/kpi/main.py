"""The kpi service app: `create_app(settings)`, and `app` for uvicorn."""

from __future__ import annotations

import asyncio
import datetime as dt

import structlog
from fastapi import FastAPI

from services.kpi import anomalies, api, api_insights, catalog, container, handlers, targets
from services.kpi.container import Kpi
from services.kpi.events import CATALOGUE
from services.kpi.models import infra
from services.kpi.settings import Settings
from shared.app import Runtime, ServiceSpec, create_service_app
from shared.db import utcnow
from shared.tasks import cancel_and_wait

log = structlog.get_logger("pitcrew.kpi")


async def _target_checks(runtime: Runtime) -> None:
    """Periodic at-risk check; publishing is claimed per target, so replicas never double-publish."""
    kpi: Kpi = runtime.domain
    while True:
        await asyncio.sleep(kpi.target_check_seconds)
        try:
            await targets.evaluate_targets(
                runtime.unit_of_work, now=utcnow(), min_elapsed=kpi.target_min_elapsed, fiscal_start=kpi.fiscal_start
            )
        except Exception as exc:  # noqa: BLE001 - keep checking on the next round
            log.warning("target_check_failed", error=repr(exc))


async def _anomaly_checks(runtime: Runtime) -> None:
    """Periodic anomaly check of the day before (UTC); a day is judged once per metric and group."""
    kpi: Kpi = runtime.domain
    while True:
        await asyncio.sleep(kpi.anomaly_check_seconds)
        try:
            async with runtime.unit_of_work() as uow:
                await anomalies.check_day(uow, day=utcnow().date() - dt.timedelta(days=1), cfg=kpi.anomaly)
        except Exception as exc:  # noqa: BLE001 - keep checking on the next round
            log.warning("anomaly_check_failed", error=repr(exc))


async def _startup(runtime: Runtime) -> None:
    kpi: Kpi = runtime.domain
    if kpi.seed_catalog:
        async with runtime.unit_of_work() as uow:
            await catalog.seed_catalog(uow)
    if kpi.target_check_seconds > 0:
        runtime.extras["target_task"] = asyncio.create_task(_target_checks(runtime), name="kpi-target-checks")
    if kpi.anomaly_check_seconds > 0 and kpi.anomaly.metrics:
        runtime.extras["anomaly_task"] = asyncio.create_task(_anomaly_checks(runtime), name="kpi-anomaly-checks")


async def _shutdown(runtime: Runtime) -> None:
    await cancel_and_wait(runtime.extras.pop("target_task", None))
    await cancel_and_wait(runtime.extras.pop("anomaly_task", None))


def create_app(settings: Settings | None = None) -> FastAPI:
    spec = ServiceSpec(
        name="kpi",
        title="Pitcrew KPI",
        description="Governed metric definitions, rollups, targets and attribution.",
        infra=infra,
        routers=[api.router, api_insights.router],
        handlers=handlers.handlers,
        on_startup=_startup,
        on_shutdown=_shutdown,
        build=container.build,
        catalogue=CATALOGUE,
    )
    return create_service_app(spec, settings or Settings())


def __getattr__(name: str) -> FastAPI:
    # `app` is built on first access so importing this module has no side effects.
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
