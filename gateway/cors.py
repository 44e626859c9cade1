"""CORS at the gateway, for browser apps on other origins (Starlette's CORSMiddleware).

Outermost, in front of the proxy: a preflight (OPTIONS with Origin and
Access-Control-Request-Method) is answered here for every path, the service prefixes
included, without a token, as browsers send none with it. Off unless origins are
configured: then no request meets this layer and no CORS header is ever sent.

An origin that is not allowed gets no Access-Control-* header at all (Starlette would
still send the exposed headers, and list the allowed methods and headers in its refusal
of a preflight): its preflight is a 403 problem, its other requests are answered as if
CORS were off (with `Vary: Origin`, for caches).  A preflight from an allowed origin
asking for a method or header that is not allowed is Starlette's 400.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.settings import Settings
from shared import problems

ALLOW_HEADERS = ("Authorization", "X-API-Key", "Content-Type", "Idempotency-Key", "If-Match", "X-Request-ID")
EXPOSE_HEADERS = ("X-Request-ID", "X-Gateway-Latency", "ETag", "Location", "Retry-After", "WWW-Authenticate")


class GatewayCORS(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        origin = request_headers["origin"]
        if not self.is_allowed_origin(origin):
            return problems.problem(
                403,
                f"Origin {origin!r} may not call this API from a browser; the gateway's CORS origins are "
                "set by PITCREW_GATEWAY_CORS_ORIGINS.",
                headers={"Vary": "Origin"},
            )
        return super().preflight_response(request_headers)

    async def simple_response(self, scope: Scope, receive: Receive, send: Send, request_headers: Headers) -> None:
        origin = request_headers.get("origin")
        if origin is None or self.is_allowed_origin(origin):
            await super().simple_response(scope, receive, send, request_headers)
            return

        async def vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, vary)


def cors_layer(app: ASGIApp, settings: Settings) -> ASGIApp:
    if not settings.cors_origins:
        return app
    return GatewayCORS(
        app,
        allow_origins=settings.cors_origins,
        allow_methods=("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
        allow_headers=ALLOW_HEADERS,
        allow_credentials=settings.cors_allow_credentials,
        expose_headers=EXPOSE_HEADERS,
        max_age=settings.cors_max_age_seconds,
    )
