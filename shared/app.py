"""Assemble a Pitcrew service: database, NATS, outbox relay, consumers, timers, routes.

Every service's `main.py` describes itself with a ServiceSpec and calls
`create_service_app`; the plumbing lives here once.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit, deadletters, idempotency, openapi, ops, problems
from shared.bus import Bus
from shared.consumer import Consumer, Handler
from shared.contracts import Catalogue
from shared.db import Database, utcnow
from shared.deadletters import DeadLetters
from shared.fastlane import FastLaneMiddleware
from shared.identity import Principal, Verifier
from shared.observability import LoopLagMonitor, RequestContextMiddleware, configure_logging
from shared.outbox import Outbox, OutboxRelay
from shared.settings import BaseServiceSettings
from shared.tables import InfraTables
from shared.timers import TimerHandler, TimerScheduler
from shared.uow import UnitOfWork


class Runtime:
    """What a running service holds: its database, its bus and its background workers."""

    def __init__(
        self,
        settings: BaseServiceSettings,
        infra: InfraTables,
        uses_nats: bool = True,
        catalogue: Catalogue | None = None,
    ):
        self.settings = settings
        self.name = settings.service_name
        self.infra = infra
        self.db = Database(
            settings.database_url,
            server_settings=settings.database_server_settings,
            write_queue=settings.sqlite_write_queue,
        )
        self.bus = Bus(
            settings.nats_url,
            settings.service_name,
            enabled=uses_nats and settings.nats_enabled,
            stream_replicas=settings.nats_stream_replicas,
        )
        self.outbox = Outbox(infra.outbox, settings.service_name, catalogue, audit=infra.audit)
        self.relay = OutboxRelay(
            self.db,
            self.outbox,
            self.bus,
            poll_seconds=settings.outbox_poll_seconds,
            batch=settings.outbox_batch_size,
        )
        self.consumer: Consumer | None = None
        self.dead_letters: DeadLetters | None = None
        self.scheduler: TimerScheduler | None = None
        self.extras: dict[str, Any] = {}
        self.domain: Any = None  # the service's typed container, set from ServiceSpec.build
        self.loop_lag = LoopLagMonitor(settings.service_name)
        self.metrics_port = ops.MetricsPort(settings.metrics_port, settings.metrics_host)

    def transaction(self, *, readonly: bool = False) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        return self.db.transaction(readonly=readonly)

    @contextlib.asynccontextmanager
    async def unit_of_work(self, *, readonly: bool = False) -> AsyncIterator[UnitOfWork]:
        """One transaction as a UnitOfWork that publishes through this service's outbox."""
        async with self.db.transaction(readonly=readonly) as session:
            yield UnitOfWork(session, self.outbox)

    async def idempotent(
        self,
        request: Request,
        principal: Principal,
        action: Callable[[UnitOfWork], Awaitable[Any]],
        *,
        status_code: int = 201,
    ) -> Response:
        return await idempotency.run(
            request, principal, self.db, self.infra.idempotency, action, status_code=status_code, outbox=self.outbox
        )


@dataclass
class ServiceSpec:
    name: str
    title: str
    description: str
    infra: InfraTables
    routers: list[APIRouter]
    handlers: Callable[[Runtime], dict[str, Handler]] | None = None
    timers: Callable[[Runtime], dict[str, TimerHandler]] | None = None
    on_startup: Callable[[Runtime], Awaitable[None]] | None = None
    on_shutdown: Callable[[Runtime], Awaitable[None]] | None = None
    configure: Callable[[FastAPI, Runtime], None] | None = None
    uses_nats: bool = True
    extra_checks: dict[str, ops.ReadinessCheck] = field(default_factory=dict)
    # The service's domain objects, built once per process from the runtime (its typed container,
    # reached by routes and handlers as `runtime.domain`).
    build: Callable[[Runtime], Any] | None = None
    # What it publishes and consumes: consumers dead-letter a schema_version they do not read.
    catalogue: Catalogue | None = None
    # /metrics on the app's port for an admin identity; the edge (the gateway) serves it only on
    # its metrics port, since its own port faces the internet.
    metrics_on_app_port: bool = True


async def get_runtime(request: Request) -> Runtime:
    """FastAPI dependency: the service's runtime."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _db_check(request: Request) -> tuple[bool, str]:
    try:
        await request.app.state.runtime.db.ping()
        return True, "ok"
    except Exception as exc:  # noqa: BLE001 - readiness reports, it does not raise
        return False, type(exc).__name__


async def _nats_check(request: Request) -> tuple[bool, str]:
    bus: Bus = request.app.state.runtime.bus
    return await bus.ping(timeout=ops.CHECK_TIMEOUT / 2)


async def _outbox_check(request: Request) -> tuple[bool, str]:
    """Events waiting to be published, and for how long: a backlog that only grows means NATS or the relay is stuck."""
    runtime: Runtime = request.app.state.runtime
    pending, oldest = await runtime.outbox.backlog(runtime.db)
    if not pending:
        return True, "empty"
    age = (utcnow() - oldest).total_seconds() if oldest else 0.0
    return age < 60, f"{pending} waiting, oldest {age:.0f} s"


def create_service_app(spec: ServiceSpec, settings: BaseServiceSettings) -> FastAPI:
    configure_logging(settings.log_level, settings.log_json)
    runtime = Runtime(settings, spec.infra, uses_nats=spec.uses_nats, catalogue=spec.catalogue)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start_runtime(runtime, spec)
        try:
            yield
        finally:
            await stop_runtime(runtime, spec)

    # Metrics and logs are ours (prometheus-client, structlog); FastAPI's native OpenTelemetry would
    # otherwise look up the global providers on every request.
    app = FastAPI(
        title=spec.title,
        description=spec.description,
        version="0.1.0",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # The service's own document is internal (the gateway publishes the merged one): served
        # below to an admin identity only, and no documentation pages on a service's port.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # operationId = the route's function name (create_plan, not create_plan_v1_plans_post): the
        # name a generated client gives the call; the gateway prefixes the service's name.
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.identity = Verifier(settings.identity_secret)
    app.state.runtime = runtime
    if spec.build is not None:
        runtime.domain = spec.build(runtime)
    problems.install(app)
    openapi.install(app)

    @app.get("/openapi.json", include_in_schema=False, dependencies=ops.INTERNAL)
    async def document() -> dict[str, Any]:
        return app.openapi()

    checks: dict[str, ops.Dependency] = {"database": ops.Dependency(_db_check)}
    if spec.uses_nats:
        checks["nats"] = ops.Dependency(_nats_check, required=False)
        checks["outbox"] = ops.Dependency(_outbox_check, required=False)
    checks.update({name: ops.Dependency(check) for name, check in spec.extra_checks.items()})
    app.include_router(ops.router(checks, spec.catalogue, metrics=spec.metrics_on_app_port))
    for r in spec.routers:
        app.include_router(r)
    if spec.handlers is not None:
        app.include_router(deadletters.router())
    app.include_router(audit.router())
    if spec.configure:
        spec.configure(app, runtime)
    if settings.fast_lane:
        app.add_middleware(FastLaneMiddleware, owner=app, routers=spec.routers)
    app.add_middleware(RequestContextMiddleware, service=spec.name)
    return app


def operation_id(route: APIRoute) -> str:
    return route.name


async def start_runtime(runtime: Runtime, spec: ServiceSpec) -> None:
    runtime.metrics_port.start()
    runtime.loop_lag.start()
    runtime.bus.start()
    handlers = spec.handlers(runtime) if spec.handlers else {}
    if handlers:
        s = runtime.settings
        runtime.consumer = Consumer(
            runtime.name,
            runtime.db,
            runtime.infra.inbox,
            runtime.bus,
            handlers,
            max_deliver=s.consumer_max_deliver,
            ack_wait=s.consumer_ack_wait_seconds,
            outbox=runtime.outbox,
            majors=spec.catalogue.majors_for if spec.catalogue else None,
            dead_letters=runtime.infra.dead_letters,
        )
    # Replays of dead letters work even while this process does not consume (NATS disabled).
    runtime.dead_letters = DeadLetters(runtime.name, runtime.db, runtime.infra.dead_letters, runtime.consumer)
    if runtime.bus.enabled:
        runtime.relay.start()
        if runtime.consumer is not None:
            runtime.consumer.start()
    if spec.timers:
        runtime.scheduler = TimerScheduler(
            runtime.name, runtime.db, runtime.infra.timers, spec.timers(runtime), outbox=runtime.outbox
        )
        runtime.scheduler.start()
    if spec.on_startup:
        await spec.on_startup(runtime)
    # Everything alive now (modules, app, settings) lives as long as the process: move it out of
    # the collector's way so a full collection during a large request does not rescan it.
    gc.freeze()


async def stop_runtime(runtime: Runtime, spec: ServiceSpec) -> None:
    if spec.on_shutdown:
        await spec.on_shutdown(runtime)
    if runtime.scheduler:
        await runtime.scheduler.stop()
    if runtime.consumer:
        await runtime.consumer.stop()
    await runtime.relay.stop()
    await runtime.bus.close()
    await runtime.db.dispose()
    await runtime.loop_lag.stop()
    runtime.metrics_port.stop()
