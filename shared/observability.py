"""structlog JSON logs, request ids, and Prometheus request metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import uuid
from contextvars import Token

import structlog
from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.context import request_id_var

REQUEST_ID_HEADER = "x-request-id"

REQUESTS = Counter("pitcrew_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "pitcrew_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_configured = False


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=getattr(logging, level.upper(), 20))
    renderer = structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), 20)),
        cache_logger_on_first_use=True,
    )


def bind_request_id(scope: Scope) -> tuple[str, Token[str | None]]:
    """The request's X-Request-ID (or a new one), put on the scope, the context and the log context.

    Returns it and the context token to reset when the request ends."""
    request_id = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            request_id = value.decode("latin-1")[:100]
            break
    request_id = request_id or uuid.uuid4().hex
    scope.setdefault("state", {})["request_id"] = request_id
    token = request_id_var.set(request_id)
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return request_id, token


class RequestContextMiddleware:
    """Pure ASGI: request id in and out, access log, latency histogram by route template."""

    def __init__(self, app: ASGIApp, service: str, access_log: bool = True):
        self.app = app
        self.service = service
        self.access_log = access_log
        self.log = structlog.get_logger("pitcrew.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id, token = bind_request_id(scope)
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            REQUESTS.labels(self.service, method, template, str(status)).inc()
            LATENCY.labels(self.service, method, template).observe(elapsed)
            if self.access_log and template not in ("/health", "/metrics", "/ready"):
                self.log.info(
                    "request",
                    method=method,
                    path=scope["path"],
                    route=template,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)


LOOP_LAG = Histogram(
    "pitcrew_event_loop_lag_seconds",
    "How late the event loop woke a timer: time it spent busy elsewhere",
    ["service"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LOOP_LAG_LAST = Gauge("pitcrew_event_loop_lag_last_seconds", "The latest event-loop lag measured", ["service"])


class LoopLagMonitor:
    """Sleeps a fixed interval and records how late it woke: a blocked loop shows up here first."""

    def __init__(self, service: str, interval: float = 0.25):
        self.service = service
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.service}-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        hist, last = LOOP_LAG.labels(self.service), LOOP_LAG_LAST.labels(self.service)
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            lag = max(0.0, time.perf_counter() - before - self.interval)
            hist.observe(lag)
            last.set(lag)
