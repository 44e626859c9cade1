"""The routes every Pitcrew app exposes: /health, /ready, /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared import asyncapi
from shared.contracts import Catalogue

ReadinessCheck = Callable[[Request], Awaitable[tuple[bool, str]]]


def router(checks: dict[str, ReadinessCheck], catalogue: Catalogue | None = None) -> APIRouter:
    r = APIRouter(tags=["operations"])

    if catalogue is not None:
        own = asyncapi.part(catalogue)

        @r.get("/asyncapi.json", summary="This service's part of the AsyncAPI document (merged at the gateway)")
        async def asyncapi_part() -> dict[str, Any]:
            return own

    @r.get("/health", summary="Alive: the process answers")
    async def health(request: Request) -> dict[str, str]:
        return {"status": "ok", "service": request.app.state.settings.service_name}

    @r.get("/ready", summary="Ready: database and NATS reachable")
    async def ready(request: Request) -> JSONResponse:
        results = await asyncio.gather(*(check(request) for check in checks.values()))
        detail = {name: {"ok": ok, "detail": msg} for name, (ok, msg) in zip(checks, results, strict=True)}
        ok = all(r[0] for r in results)
        body = {
            "status": "ready" if ok else "not_ready",
            "service": request.app.state.settings.service_name,
            "checks": detail,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @r.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)  # documented as text/plain
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return r
