"""The kpi service app: `create_app(settings)`, and `app` for uvicorn."""

from __future__ import annotations

import asyncio
import datetime as dt

import structlog
from fastapi import FastAPI

from services.kpi import api, events, metrics
from services.kpi.ingest import Ingestor, tune_sqlite
from services.kpi.models import infra
from services.kpi.settings import Settings
from shared.app import Runtime, ServiceSpec, create_service_app
from shared.db import utcnow
from shared.tasks import cancel_and_wait

log = structlog.get_logger("pitcrew.kpi")


def _configure(app: FastAPI, runtime: Runtime) -> None:
    # Built before start-up: the event handlers need the ingestor when the consumer starts.
    s: Settings = runtime.settings  # type: ignore[assignment]
    tune_sqlite(runtime.db)  # no connection is open yet
    runtime.extras["ingestor"] = Ingestor(late_after=dt.timedelta(hours=s.late_after_hours))


async def _target_checks(runtime: Runtime) -> None:
    """Periodic at-risk check; publishing is claimed per target, so replicas never double-publish."""
    s: Settings = runtime.settings  # type: ignore[assignment]
    while True:
        await asyncio.sleep(s.target_check_seconds)
        try:
            await metrics.evaluate_targets(runtime.db, runtime.outbox, utcnow(), s.target_min_elapsed)
        except Exception as exc:  # noqa: BLE001 - keep checking on the next round
            log.warning("target_check_failed", error=repr(exc))


async def _startup(runtime: Runtime) -> None:
    s: Settings = runtime.settings  # type: ignore[assignment]
    if s.seed_catalog:
        await metrics.seed_catalog(runtime.db)
    if s.target_check_seconds > 0:
        runtime.extras["target_task"] = asyncio.create_task(_target_checks(runtime), name="kpi-target-checks")


async def _shutdown(runtime: Runtime) -> None:
    await cancel_and_wait(runtime.extras.pop("target_task", None))


def create_app(settings: Settings | None = None) -> FastAPI:
    spec = ServiceSpec(
        name="kpi",
        title="Pitcrew KPI",
        description="Governed metric definitions, rollups, targets and attribution.",
        infra=infra,
        routers=[api.router],
        handlers=events.handlers,
        on_startup=_startup,
        on_shutdown=_shutdown,
        configure=_configure,
    )
    return create_service_app(spec, settings or Settings())


def __getattr__(name: str) -> FastAPI:
    # `app` is built on first access so importing this module has no side effects.
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
