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
from wsgiref.simple_server import WSGIServer

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server

from shared import asyncapi
from shared.contracts import Catalogue
from shared.identity import require_roles

# What only an operator or another Pitcrew process reads on a service's own port: metrics name every
# route and its traffic, the documents every field. The gateway fetches the documents with its own
# identity and publishes the merged ones; Prometheus scrapes the metrics port (MetricsPort).
INTERNAL = [Depends(require_roles())]

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


def router(checks: dict[str, Dependency], catalogue: Catalogue | None = None, *, metrics: bool = True) -> APIRouter:
    r = APIRouter(tags=["operations"])

    if catalogue is not None:
        own = asyncapi.part(catalogue)

        @r.get(
            "/asyncapi.json",
            summary="This service's part of the AsyncAPI document (merged at the gateway)",
            dependencies=INTERNAL,
        )
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

    if metrics:

        @r.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse, dependencies=INTERNAL)
        async def metrics_text() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return r


class MetricsPort:
    """/metrics on a port of its own (prometheus-client's server, in a thread), for Prometheus.

    The app's port answers /metrics only to an admin identity; this one answers anyone who can
    reach it, so it binds where only the scraper can (the pod's network, never the Service)."""

    def __init__(self, port: int | None, host: str):
        self.port, self.host = port, host
        self._server: WSGIServer | None = None

    def start(self) -> None:
        if self.port is not None and self._server is None:
            self._server, _thread = start_http_server(self.port, addr=self.host)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
