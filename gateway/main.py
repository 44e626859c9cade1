"""The gateway app: `create_app(settings)`, and `app` for uvicorn.

The layers a request meets, outermost first:

- CORS (only when `PITCREW_GATEWAY_CORS_ORIGINS` lists origins): a preflight is answered
  here, before authentication, for every path;
- the proxy (gateway.proxy), a pure ASGI layer: `/budget/*`, `/workflow/*`, `/kpi/*` and
  `/registry/*` are authenticated, authorized, forwarded and answered without meeting
  FastAPI's routing or any other middleware;
- the console layer (gateway.console): a path that is none of the API's is forwarded to the web
  console, so the browser sees one origin;
- the shared stack Starlette and FastAPI build (error handler, request context: request
  id, metrics, access log);
- the guard (gateway.guard): `/gateway/...` is admitted before a byte of its body is read,
  and every body is bounded by its route class;
- FastAPI's router: the gateway's own routes (gateway.api, gateway.public). A path none of
  them knows falls through to FastAPI's 404 problem.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp

from gateway import api, public
from gateway.console import ConsoleLayer
from gateway.cors import cors_layer
from gateway.guard import GuardMiddleware
from gateway.models import infra
from gateway.policy import Policy
from gateway.proxy import ProxyMiddleware
from gateway.settings import Settings
from gateway.state import Gateway, Slot
from shared.app import Runtime, ServiceSpec, create_service_app

# FastAPI's own documentation routes load Swagger UI and ReDoc from a CDN; gateway.public serves
# /docs from here, and the suite-wide /health and /openapi.json replace the plain ones.
REPLACED = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/health"})


def create_app(settings: Settings | None = None, *, run_forwarder: bool = True) -> FastAPI:
    settings = settings or Settings()
    policy = Policy.load(settings.policy_path)  # a broken policy stops the start, not the first request
    slot = Slot()

    async def on_startup(runtime: Runtime) -> None:
        slot.current = Gateway.build(settings, runtime.db, policy)
        if run_forwarder:
            slot.current.forwarder.start()

    async def on_shutdown(runtime: Runtime) -> None:
        await console.aclose()
        gw, slot.current = slot.current, None
        if gw is not None:
            await gw.aclose()

    def configure(app: FastAPI, runtime: Runtime) -> None:
        app.state.gateway = slot
        app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in REPLACED]
        # A trailing slash is a 404, not a redirect to an address built from the Host header.
        app.router.redirect_slashes = False
        app.include_router(public.router)
        app.router.routes.insert(0, app.router.routes.pop())  # ahead of the shared /health ...
        _hide_from_schema(app, "/health", keep=public.health)  # ... which leaves the document to it
        app.add_middleware(GuardMiddleware, slot=slot)

    spec = ServiceSpec(
        name="gateway",
        title="Pitcrew API",
        description="The one front door: authentication, access control, rate limits, webhooks. "
        "Service APIs are under /budget, /workflow, /kpi and /registry; their events are described "
        "at /asyncapi.json (and readable at /asyncapi).",
        infra=infra,
        routers=[api.router, api.webhook_router],
        uses_nats=False,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        configure=configure,
        metrics_on_app_port=False,  # the edge serves metrics on PITCREW_GATEWAY_METRICS_PORT only
    )
    app = create_service_app(spec, settings)
    console = ConsoleLayer(app, app.router.routes, settings.console_url, settings.max_request_body_bytes)
    # The proxy (and CORS, when configured) wrap the whole middleware stack Starlette/FastAPI build:
    # proxied requests meet none of those layers; the proxy does their request id, metrics, access
    # log and 500 problem itself.
    build_stack = app.build_middleware_stack

    def build_with_proxy() -> ASGIApp:
        console.app = build_stack()  # the console layer: what is not the API goes to the web console
        return cors_layer(ProxyMiddleware(console, slot=slot, service="gateway"), settings)

    app.build_middleware_stack = build_with_proxy  # type: ignore[method-assign]
    return app


def _hide_from_schema(app: FastAPI, path: str, keep: object) -> None:
    """Leave `path` out of the document except for the route whose endpoint is `keep` (routers included
    in the app are looked into: FastAPI keeps them as one entry each)."""
    for entry in app.router.routes:
        router = getattr(entry, "original_router", None)
        for route in router.routes if router is not None else [entry]:
            if isinstance(route, APIRoute) and route.path == path and route.endpoint is not keep:
                route.include_in_schema = False


def __getattr__(name: str) -> FastAPI:
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
