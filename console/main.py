"""The console app: `create_app(settings)`, and `app` for uvicorn.

Server-rendered pages (Jinja2, htmx for partial updates, vendored static files) over the
gateway's public API. Reading works without JavaScript; every change is a CSRF-checked form.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from console import admin, approvals, budget, kpis, ledger, oidc, signin, stack
from console.api import ApiProblem
from console.settings import Settings
from console.web import Refused, SignInNeeded, _page, current_person, explain, sign_in_redirect
from gateway.policy import Policy

log = structlog.get_logger("pitcrew.console")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    policy = Policy.load(settings.policy_path)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=settings.gateway_url, timeout=settings.api_timeout_seconds) as client:
            app.state.http = client
            yield

    app = FastAPI(title="Pitcrew console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.settings = settings
    app.state.policy = policy
    app.state.oidc = oidc.Provider(settings) if settings.oidc_issuer else None
    app.state.calendars = {}  # business calendars by key, read once (console.countdown)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret,
        session_cookie="pitcrew_console",
        max_age=settings.session_max_age_seconds,
        same_site="lax",
        https_only=settings.secure_cookies,
    )

    @app.middleware("http")
    async def headers_and_timing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "public, max-age=3600")
        else:
            response.headers.setdefault("Cache-Control", "no-store")
        timing = getattr(request.state, "timing", None)
        total = (time.perf_counter() - started) * 1000
        api = timing.seconds * 1000 if timing else 0.0
        # Server time of the page beside the API time it spent (what bench/console_pages.py reads).
        calls = timing.calls if timing else 0
        response.headers["Server-Timing"] = f'page;dur={total:.2f}, api;dur={api:.2f};desc="{calls} calls"'
        return response

    app.mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static")
    for module in (signin, oidc, budget, ledger, approvals, kpis, stack, admin):
        app.include_router(module.router)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": "console"}

    @app.get("/ready", include_in_schema=False)
    async def ready() -> dict[str, str]:
        return {"status": "ready", "service": "console"}

    _errors(app)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        return sign_in_redirect(exc.next_url)

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem) -> Response:
        if exc.status == 401:  # the token expired or was revoked: sign in again, then come back
            request.session.pop("person", None)
            return sign_in_redirect(request.url.path)
        page = _page(request, current_person(request))
        return page.render("error.html", status=exc.status, problem=explain(exc))

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        page = _page(request, current_person(request))
        problem = {"status": exc.status, "title": "Refused", "detail": exc.detail, "fields": [], "what_to_do": ""}
        return page.render("error.html", status=exc.status, problem=problem)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/static/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        page = _page(request, current_person(request))
        detail = "There is no page at this address." if exc.status_code == 404 else str(exc.detail)
        problem: dict[str, Any] = {
            "status": exc.status_code,
            "title": "Not found" if exc.status_code == 404 else "Error",
            "detail": detail,
            "fields": [],
            "what_to_do": "Use the menu to find what you were looking for.",
        }
        return page.render("error.html", status=exc.status_code, problem=problem)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("console_error", path=request.url.path, exc_info=exc)
        page = _page(request, current_person(request))
        problem = {
            "status": 500,
            "title": "Something went wrong in the console",
            "detail": "The page could not be built. The error has been logged.",
            "fields": [],
            "what_to_do": "Try again in a moment; if it keeps happening, tell your administrator the time it happened.",
        }
        return page.render("error.html", status=500, problem=problem)


def __getattr__(name: str) -> FastAPI:
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
