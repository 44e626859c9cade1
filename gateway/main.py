"""The gateway app: `create_app(settings)`, and `app` for uvicorn.

The proxy is a pure ASGI middleware (gateway.proxy), the outermost of ours, so
forwarded requests skip FastAPI's routing and every other middleware layer; the
gateway's own routes (API keys, webhooks, /health, /openapi.json, /docs) are
ordinary FastAPI routes behind it, with the shared request-context middleware.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp

from gateway import api
from gateway.auth import Authenticator
from gateway.delivery import Forwarder
from gateway.identity import IdentityMinter
from gateway.models import infra
from gateway.openapi import OpenAPIMerger, services_health
from gateway.policy import Policy
from gateway.proxy import ProxyMiddleware
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings
from gateway.upstream import Upstreams
from shared.app import Runtime, ServiceSpec, create_service_app
from shared.db import Database


@dataclass
class Gateway:
    """What a running gateway holds, built at start-up and shared by the proxy and the routes."""

    settings: Settings
    db: Database
    policy: Policy
    upstreams: Upstreams
    auth: Authenticator
    limiter: RateLimiter
    forwarder: Forwarder
    minter: IdentityMinter
    openapi: OpenAPIMerger | None = None


def create_app(settings: Settings | None = None, *, run_forwarder: bool = True) -> FastAPI:
    settings = settings or Settings()
    policy = Policy.load(settings.policy_path)  # a broken policy stops the start, not the first request
    ref: dict = {}

    async def on_startup(runtime: Runtime) -> None:
        upstreams = Upstreams(settings)
        gw = Gateway(
            settings=settings,
            db=runtime.db,
            policy=policy,
            upstreams=upstreams,
            auth=Authenticator(settings, runtime.db),
            limiter=RateLimiter(settings),
            forwarder=Forwarder(settings, runtime.db, upstreams),
            minter=IdentityMinter(settings.identity_secret, settings.identity_ttl_seconds),
        )
        gw.openapi = OpenAPIMerger(gw)
        ref["gateway"] = gw
        if run_forwarder:
            gw.forwarder.start()

    async def on_shutdown(runtime: Runtime) -> None:
        gw: Gateway | None = ref.pop("gateway", None)
        if gw is not None:
            await gw.forwarder.stop()
            await gw.upstreams.aclose()
            await gw.auth.aclose()

    def configure(app: FastAPI, runtime: Runtime) -> None:
        app.state.gateway_ref = ref
        # The suite-wide /health and /openapi.json go first, ahead of the plain ones.
        app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/openapi.json"]

        @app.get(
            "/health",
            tags=["operations"],
            summary="The gateway and each service's /ready",
            operation_id="gateway_health",
        )
        async def health(request: Request) -> JSONResponse:
            services = await services_health(ref["gateway"])
            ok = all(v["status"] == "ready" for v in services.values())
            return JSONResponse(
                {
                    "status": "ok" if ok else "degraded",
                    "service": "gateway",
                    "gateway": {"status": "ok"},
                    "services": services,
                }
            )

        @app.get("/openapi.json", include_in_schema=False)
        async def openapi(request: Request) -> JSONResponse:
            return JSONResponse(await ref["gateway"].openapi.document(app.openapi()))

        ours = app.router.routes[-2:]
        del app.router.routes[-2:]
        app.router.routes[:0] = ours

    spec = ServiceSpec(
        name="gateway",
        title="Pitcrew API",
        description="The one front door: authentication, access control, rate limits, webhooks. "
        "Service APIs are under /budget, /workflow, /kpi and /registry.",
        infra=infra,
        routers=[api.router, api.webhook_router],
        uses_nats=False,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        configure=configure,
    )
    app = create_service_app(spec, settings)
    # The proxy wraps the whole middleware stack Starlette/FastAPI build (error handler, telemetry,
    # body limit, request context, ...): proxied requests meet none of those layers; it does their
    # request id, metrics, access log and 500 problem itself.
    build_stack = app.build_middleware_stack

    def build_with_proxy() -> ASGIApp:
        return ProxyMiddleware(build_stack(), gateway_ref=ref, service="gateway")

    app.build_middleware_stack = build_with_proxy  # type: ignore[method-assign]
    return app


def __getattr__(name: str) -> FastAPI:
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
