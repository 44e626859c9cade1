"""The workflow service app: `create_app(settings)`, and `app` for uvicorn."""

from __future__ import annotations

from fastapi import FastAPI

from services.workflow import api, api_attachments, api_deliverables, api_requests, container, handlers
from services.workflow.defaults import ensure_defaults
from services.workflow.events import CATALOGUE
from services.workflow.models import infra
from services.workflow.scheduler import use_batched_scheduler
from services.workflow.settings import Settings
from shared.app import Runtime, ServiceSpec, create_service_app


async def on_startup(runtime: Runtime) -> None:
    """Shipped defaults (calendar `default`, `budget-approval`, `tool-renewal`) exist once, whatever the replicas."""
    settings = runtime.settings
    assert isinstance(settings, Settings)
    await use_batched_scheduler(runtime, settings.timer_poll_seconds)
    await runtime.domain.files.start()
    await ensure_defaults(runtime, runtime.domain)


async def on_shutdown(runtime: Runtime) -> None:
    await runtime.domain.files.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    spec = ServiceSpec(
        name="workflow",
        title="Pitcrew Workflow",
        description="Approval workflows with business-hours SLAs that escalate on their own.",
        infra=infra,
        routers=[api.router, api_requests.router, api_deliverables.router, api_attachments.router],
        handlers=handlers.handlers,
        timers=handlers.timer_handlers,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
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
