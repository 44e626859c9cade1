"""The routes every Pitcrew app exposes: /health (alive), /ready (may take traffic),
/health/dependencies (each dependency, checked with a round trip), /metrics.

Three questions, three probes. Liveness: the process answers (a restart would help only if
not). Readiness: the app can do its work: its database answers. NATS is not required: while it is
down, writes keep working and their events wait in the outbox, so taking every replica out of
rotation during a NATS outage would turn a delay into an outage. Dependency health: every
dependency, each with a round trip and a timeout (a frozen NATS process keeps its TCP connection
open; only a PING shows it is gone), for dashboards and alerts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared import asyncapi
from shared.contracts import Catalogue

ReadinessCheck = Callable[[Request], Awaitable[tuple[bool, str]]]
CHECK_TIMEOUT = 2.0  # seconds a dependency gets to answer before it counts as down


@dataclass(frozen=True)
class Dependency:
    check: ReadinessCheck
    required: bool = True  # needed for readiness; otherwise reported only


async def _timed(check: ReadinessCheck, request: Request) -> tuple[bool, str]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await check(request)
    except TimeoutError:
        return False, f"no answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:  # noqa: BLE001 - a probe reports a failing dependency, it does not fail itself
        return False, type(exc).__name__


async def _run(request: Request, deps: dict[str, Dependency]) -> dict[str, dict[str, Any]]:
    results = await asyncio.gather(*(_timed(d.check, request) for d in deps.values()))
    return {
        name: {"ok": ok, "detail": msg, "required": dep.required}
        for (name, dep), (ok, msg) in zip(deps.items(), results, strict=True)
    }


def router(checks: dict[str, Dependency], catalogue: Catalogue | None = None) -> APIRouter:
    r = APIRouter(tags=["operations"])

    if catalogue is not None:
        own = asyncapi.part(catalogue)

        @r.get("/asyncapi.json", summary="This service's part of the AsyncAPI document (merged at the gateway)")
        async def asyncapi_part() -> dict[str, Any]:
            return own

    @r.get("/health", summary="Alive: the process answers (the liveness probe)")
    async def health(request: Request) -> dict[str, str]:
        return {"status": "ok", "service": request.app.state.settings.service_name}

    @r.get(
        "/ready",
        summary="Ready for traffic: its database answers (NATS is reported, not required)",
    )
    async def ready(request: Request) -> JSONResponse:
        detail = await _run(request, checks)
        ok = all(d["ok"] for d in detail.values() if d["required"])
        body = {
            "status": "ready" if ok else "not_ready",
            "service": request.app.state.settings.service_name,
            "checks": detail,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @r.get("/health/dependencies", summary="Each dependency checked with a round trip: ok or degraded")
    async def dependencies(request: Request) -> dict[str, Any]:
        detail = await _run(request, checks)
        return {
            "status": "ok" if all(d["ok"] for d in detail.values()) else "degraded",
            "service": request.app.state.settings.service_name,
            "dependencies": detail,
        }

    @r.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)  # documented as text/plain
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return r
