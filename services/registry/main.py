"""The registry service app: `create_app(settings)`, and `app` for uvicorn."""

from __future__ import annotations

from fastapi import FastAPI

from services.registry import api, api_stack, container, handlers
from services.registry.events import CATALOGUE
from services.registry.models import infra
from services.registry.settings import Settings
from shared.app import ServiceSpec, create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    spec = ServiceSpec(
        name="registry",
        title="Pitcrew Registry",
        description="The martech stack: tools, owners, contracts, renewals, usage and integrations.",
        infra=infra,
        routers=[api.router, api_stack.router],
        handlers=handlers.handlers,
        timers=handlers.timer_handlers,
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
