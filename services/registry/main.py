"""The registry service app: `create_app(settings)`, and `app` for uvicorn."""

from __future__ import annotations

from fastapi import FastAPI

from services.registry import api, handlers
from services.registry.events import CATALOGUE
from services.registry.models import infra
from services.registry.settings import Settings
from services.registry.stack import Stack
from shared.app import ServiceSpec, create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    spec = ServiceSpec(
        name="registry",
        title="Pitcrew Registry",
        description="The martech stack: tools, owners, contracts, renewals, usage and integrations.",
        infra=infra,
        routers=[api.router],
        handlers=handlers.handlers,
        timers=handlers.timer_handlers,
        catalogue=CATALOGUE,
    )
    app = create_service_app(spec, settings)
    runtime = app.state.runtime
    runtime.extras["stack"] = Stack(runtime.outbox, infra.timers, settings)
    return app


def __getattr__(name: str) -> FastAPI:
    # `app` is built on first access so importing this module has no side effects.
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
