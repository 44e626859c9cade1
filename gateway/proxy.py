"""The proxy hot path, as a pure ASGI middleware in front of the gateway's own routes.

`/budget/*`, `/workflow/*`, `/kpi/*` and `/registry/*` never touch FastAPI's
router: authenticate, authorize against the policy, rate-limit, mint a fresh
internal identity, forward, stream the answer back. Everything else falls
through to the gateway's FastAPI app (/gateway/v1, /webhooks, /health, ...).

The time the gateway itself spends (everything except waiting for the service)
is returned in `X-Gateway-Latency` (milliseconds).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import httpx
import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.settings import SERVICE_NAMES
from gateway.upstream import ServiceDown
from shared import problems
from shared.errors import DomainError, Forbidden, Unauthorized

if TYPE_CHECKING:
    from gateway.main import Gateway

log = structlog.get_logger("pitcrew.gateway.proxy")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Request headers never forwarded: hop-by-hop ones, the client's credentials, any
# identity it tries to assert, and those the gateway sets itself.
DROP_REQUEST = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer", b"trailers",
    b"transfer-encoding", b"upgrade", b"host", b"content-length", b"authorization", b"x-api-key",
    b"x-pitcrew-identity", b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
    b"x-forwarded-prefix",
})
DROP_RESPONSE = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "x-request-id", "server", "date",
})


@dataclasses.dataclass(frozen=True)
class RouteLabel:
    """What the shared metrics middleware reads as the route: service + route class, never the raw path."""

    path: str


LABELS = {(svc, cls): RouteLabel(f"/{svc}/* ({cls})") for svc in SERVICE_NAMES for cls in ("read", "write")}
PREFIXES = {svc: len(svc) + 1 for svc in SERVICE_NAMES}


class ProxyMiddleware:
    def __init__(self, app: ASGIApp, gateway_ref: dict):
        self.app = app
        self.gateway_ref = gateway_ref  # {"gateway": Gateway} once the app has started

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        cut = path.find("/", 1)
        service = path[1:cut] if cut > 0 else path[1:]
        if service not in PREFIXES:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        gw: Gateway = self.gateway_ref["gateway"]
        method: str = scope["method"]
        route_class = "read" if method in READ_METHODS else "write"
        scope["route"] = LABELS[(service, route_class)]
        sub = path[cut:] if cut > 0 else "/"
        try:
            await self._proxy(gw, scope, receive, send, service, sub, method, route_class, started)
        except DomainError as exc:
            await self._problem(scope, receive, send, exc)

    async def _proxy(self, gw: Gateway, scope: Scope, receive: Receive, send: Send, service: str, sub: str,
                     method: str, route_class: str, started: float) -> None:
        authorization = api_key = None
        host = b""
        forwarded_for = b""
        headers: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:
            if name in DROP_REQUEST:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                elif name == b"x-api-key":
                    api_key = value.decode("latin-1")
                elif name == b"host":
                    host = value
                elif name == b"x-forwarded-for":
                    forwarded_for = value
                continue
            headers.append((name, value))

        principal = await gw.auth.authenticate(authorization, api_key)
        if "/." in sub and any(seg in (".", "..") for seg in sub.split("/")):
            raise Forbidden("Paths with '.' or '..' segments are not forwarded.")
        if not gw.policy.allows(principal.roles, service, method, sub):
            raise Forbidden(
                f"Your roles ({', '.join(sorted(principal.roles)) or 'none'}) may not {method} {service} {sub}."
            )
        retry_after = await gw.limiter.check(route_class, principal.subject)
        if retry_after is not None:
            await self._too_many(scope, receive, send, route_class, gw.limiter.describe(route_class), retry_after)
            return

        body = await _read_body(receive, gw.settings.max_request_body_bytes)
        if body is None:
            await problems.problem(413, f"The request body is larger than {gw.settings.max_request_body_bytes} bytes.",
                                   instance=scope["path"])(scope, receive, send)
            return

        request_id: str = scope.get("state", {}).get("request_id") or ""
        identity = gw.minter.mint(principal, request_id)
        client = scope.get("client")
        client_ip = (client[0] if client else "").encode()
        headers.append((b"x-pitcrew-identity", identity.encode()))
        headers.append((b"x-request-id", request_id.encode("latin-1")))
        headers.append((b"x-forwarded-for", forwarded_for + b", " + client_ip if forwarded_for else client_ip))
        headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
        if host:
            headers.append((b"x-forwarded-host", host))
        headers.append((b"x-forwarded-prefix", b"/" + service.encode()))

        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        target = raw_path[PREFIXES[service]:] or b"/"
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]

        sent_at = time.perf_counter()
        try:
            response = await gw.upstreams.send(service, method, target, headers, content=body or None)
        except ServiceDown as exc:
            await problems.problem(503, f"The {service} service is not reachable; try again shortly.",
                                   instance=scope["path"], headers={"Retry-After": "2"})(scope, receive, send)
            log.warning("upstream_down", service=service, error=str(exc))
            return
        except httpx.TimeoutException:
            await problems.problem(504, f"The {service} service did not answer in time.",
                                   instance=scope["path"])(scope, receive, send)
            return
        except httpx.HTTPError as exc:
            await problems.problem(502, f"The {service} service answered badly: {type(exc).__name__}.",
                                   instance=scope["path"])(scope, receive, send)
            return
        waited = time.perf_counter() - sent_at
        try:
            out = [(k, v) for k, v in response.headers.raw if k.decode("latin-1").lower() not in DROP_RESPONSE]
            own_ms = (time.perf_counter() - started - waited) * 1000
            out.append((b"x-gateway-latency", f"{own_ms:.3f}".encode()))
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async for chunk in response.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def _problem(self, scope: Scope, receive: Receive, send: Send, exc: DomainError) -> None:
        status = next((st for cls, st in problems.STATUS_OF.items() if isinstance(exc, cls)), 400)
        headers = {"WWW-Authenticate": 'Bearer realm="pitcrew"'} if isinstance(exc, Unauthorized) else None
        response = problems.problem(status, exc.detail, title=exc.title, kind=exc.kind,
                                    errors_=[e.as_dict() for e in exc.errors] or None,
                                    instance=scope["path"], headers=headers)
        await response(scope, receive, send)

    async def _too_many(self, scope: Scope, receive: Receive, send: Send, route_class: str, limit: str,
                        retry_after: float) -> None:
        await problems.problem(
            429, f"Rate limit for {route_class} requests ({limit}) exceeded; retry in {int(retry_after)} s.",
            instance=scope["path"], headers={"Retry-After": str(int(retry_after))},
        )(scope, receive, send)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body (None when over `limit`); buffered so a refused connection can fail over."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
