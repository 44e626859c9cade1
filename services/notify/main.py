"""The notify service app: `create_app(settings)`, and `app` for uvicorn."""

from __future__ import annotations

from fastapi import FastAPI

from services.notify import api, container, handlers
from services.notify.events import CATALOGUE
from services.notify.models import infra
from services.notify.settings import Settings
from shared.app import Runtime, ServiceSpec, create_service_app


async def _start(runtime: Runtime) -> None:
    notify: container.Notify = runtime.domain
    notify.outbound.start()
    notify.hooks.start()


async def _stop(runtime: Runtime) -> None:
    notify: container.Notify = runtime.domain
    await notify.outbound.stop()
    await notify.hooks.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    spec = ServiceSpec(
        name="notify",
        title="Pitcrew Notify",
        description="People hear about what needs them (e-mail, Slack, Teams, in-app); partners receive the "
        "events they subscribe to.",
        infra=infra,
        routers=[api.router, api.public],
        handlers=handlers.handlers,
        build=container.build,
        catalogue=CATALOGUE,
        on_startup=_start,
        on_shutdown=_stop,
    )
    return create_service_app(spec, settings or Settings())


def __getattr__(name: str) -> FastAPI:
    # `app` is built on first access so importing this module has no side effects.
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
