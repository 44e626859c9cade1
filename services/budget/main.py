"""The budget service app: `create_app(settings)`, and `app` for uvicorn."""

from __future__ import annotations

from fastapi import FastAPI

from services.budget import (
    api,
    api_campaigns,
    api_erp,
    api_integrations,
    api_ledger,
    api_requests,
    api_versions,
    container,
    handlers,
)
from services.budget.events import CATALOGUE
from services.budget.models import infra
from services.budget.settings import Settings
from shared.app import ServiceSpec, create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    spec = ServiceSpec(
        name="budget",
        title="Pitcrew Budget",
        description=(
            "Plans, budget lines and an immutable ledger that always knows what is allocated, "
            "committed, spent and available."
        ),
        infra=infra,
        routers=[
            api.router,
            api_ledger.router,
            api_integrations.router,
            api_erp.router,
            api_versions.router,
            api_campaigns.router,
            api_requests.router,
        ],
        handlers=handlers.handlers,
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
