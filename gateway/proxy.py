"""The proxy hot path, as one pure ASGI middleware in front of everything else in the gateway.

`/budget/*`, `/workflow/*`, `/kpi/*` and `/registry/*` never touch FastAPI's
router nor any other middleware of ours: this one layer takes the request id,
authenticates, authorizes against the policy, rate-limits, mints a fresh
internal identity, forwards, streams the answer back, and records the metrics
and the access log line exactly as the shared request-context middleware does
for every other route (same metric names and labels, same log event). Everything
else falls through to the gateway's FastAPI app (/gateway/v1, /webhooks,
/health, ...) and its middleware.

The time the gateway itself spends (everything except waiting for the service)
is returned in `X-Gateway-Latency` (milliseconds).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import aiohttp
import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.settings import SERVICE_NAMES
from gateway.upstream import ServiceDown, UpstreamBroken, UpstreamTimeout
from shared import problems
from shared.context import request_id_var
from shared.errors import DomainError, Forbidden, Unauthorized
from shared.observability import LATENCY, REQUESTS, bind_request_id

if TYPE_CHECKING:
    from gateway.main import Gateway

log = structlog.get_logger("pitcrew.gateway.proxy")
access_log = structlog.get_logger("pitcrew.access")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Request headers never forwarded: hop-by-hop ones, the client's credentials, any
# identity it tries to assert, and those the gateway sets itself.
DROP_REQUEST = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"authorization",
        b"x-api-key",
        b"x-pitcrew-identity",
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
    }
)
DROP_RESPONSE = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"x-request-id",
        b"server",
        b"date",
    }
)


@dataclasses.dataclass(frozen=True)
class RouteLabel:
    """What the metrics read as the route: service + route class, never the raw path."""

    path: str


LABELS = {(svc, cls): RouteLabel(f"/{svc}/* ({cls})") for svc in SERVICE_NAMES for cls in ("read", "write")}
PREFIXES = {svc: len(svc) + 1 for svc in SERVICE_NAMES}
FORWARDED_PREFIX = {svc: f"/{svc}" for svc in SERVICE_NAMES}


class ProxyMiddleware:
    def __init__(self, app: ASGIApp, gateway_ref: dict, service: str = "gateway", access_log: bool = True):
        self.app = app
        self.gateway_ref = gateway_ref  # {"gateway": Gateway} once the app has started
        self.service = service
        self.access_log = access_log
        # The labelled metric children, looked up once per (method, route, status).
        self._metrics: dict[tuple[str, str, int], tuple] = {}

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
        request_id, token = bind_request_id(scope)
        method: str = scope["method"]
        route_class = "read" if method in READ_METHODS else "write"
        label = LABELS[(service, route_class)]
        scope["route"] = label
        sub = path[cut:] if cut > 0 else "/"
        status = 500
        head_sent = [False]
        try:
            try:
                status = await self._proxy(
                    scope, receive, send, service, sub, method, route_class, request_id, started, head_sent
                )
            except DomainError as exc:
                status = await self._problem(scope, receive, send, exc, request_id)
            except Exception as exc:
                if head_sent[0]:
                    raise  # the answer is half sent: the server drops the connection
                # What the shared problem handler does for the app's own routes (this layer is outside it).
                log.error("unhandled_error", path=path, request_id=request_id, exc_info=exc)
                await self._respond(
                    scope,
                    receive,
                    send,
                    problems.problem(
                        500,
                        "An unexpected error occurred. It has been logged; quote the request id when reporting it.",
                        instance=path,
                        request_id=request_id,
                        headers={"X-Request-ID": request_id},
                    ),
                )
        finally:
            elapsed = time.perf_counter() - started
            key = (method, label.path, status)
            children = self._metrics.get(key)
            if children is None:
                children = self._metrics[key] = (
                    REQUESTS.labels(self.service, method, label.path, str(status)),
                    LATENCY.labels(self.service, method, label.path),
                )
            children[0].inc()
            children[1].observe(elapsed)
            if self.access_log:
                access_log.info(
                    "request", method=method, path=path, route=label.path, status=status, ms=round(elapsed * 1000, 2)
                )
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)

    async def _proxy(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        service: str,
        sub: str,
        method: str,
        route_class: str,
        request_id: str,
        started: float,
        head_sent: list[bool],
    ) -> int:
        gw: Gateway = self.gateway_ref["gateway"]
        authorization = api_key = None
        host = ""
        forwarded_for = ""
        has_body = False
        headers: list[tuple[str, str]] = []
        for name, value in scope["headers"]:
            if name in DROP_REQUEST:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                elif name == b"x-api-key":
                    api_key = value.decode("latin-1")
                elif name == b"host":
                    host = value.decode("latin-1")
                elif name == b"x-forwarded-for":
                    forwarded_for = value.decode("latin-1")
                elif name == b"content-length" or name == b"transfer-encoding":
                    has_body = True
                continue
            headers.append((name.decode("latin-1"), value.decode("latin-1")))

        principal = await gw.auth.authenticate(authorization, api_key)
        if "/." in sub and any(seg in (".", "..") for seg in sub.split("/")):
            raise Forbidden("Paths with '.' or '..' segments are not forwarded.")
        if not gw.policy.allows(principal.roles, service, method, sub):
            raise Forbidden(
                f"Your roles ({', '.join(sorted(principal.roles)) or 'none'}) may not {method} {service} {sub}."
            )
        retry_after = await gw.limiter.check(route_class, principal.subject)
        if retry_after is not None:
            return await self._respond(
                scope,
                receive,
                send,
                problems.problem(
                    429,
                    f"Rate limit for {route_class} requests ({gw.limiter.describe(route_class)}) exceeded; "
                    f"retry in {int(retry_after)} s.",
                    instance=scope["path"],
                    headers={"Retry-After": str(int(retry_after)), "X-Request-ID": request_id},
                ),
            )

        # A request without Content-Length or Transfer-Encoding has no body (RFC 9112 6.3).
        body = await _read_body(receive, gw.settings.max_request_body_bytes) if has_body else b""
        if body is None:
            return await self._respond(
                scope,
                receive,
                send,
                problems.problem(
                    413,
                    f"The request body is larger than {gw.settings.max_request_body_bytes} bytes.",
                    instance=scope["path"],
                    headers={"X-Request-ID": request_id},
                ),
            )

        client = scope.get("client")
        client_ip = client[0] if client else ""
        headers.append(("x-pitcrew-identity", gw.minter.mint(principal)))
        headers.append(("x-request-id", request_id))
        headers.append(("x-forwarded-for", f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip))
        headers.append(("x-forwarded-proto", scope.get("scheme", "http")))
        if host:
            headers.append(("x-forwarded-host", host))
        headers.append(("x-forwarded-prefix", FORWARDED_PREFIX[service]))

        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        target = raw_path[PREFIXES[service] :].decode("latin-1") or "/"
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")

        sent_at = time.perf_counter()
        try:
            response = await gw.upstreams.send(service, method, target, headers, content=body or None)
        except ServiceDown as exc:
            log.warning("upstream_down", service=service, error=str(exc))
            return await self._respond(
                scope,
                receive,
                send,
                problems.problem(
                    503,
                    f"The {service} service is not reachable; try again shortly.",
                    instance=scope["path"],
                    headers={"Retry-After": "2", "X-Request-ID": request_id},
                ),
            )
        except UpstreamTimeout:
            return await self._respond(
                scope,
                receive,
                send,
                problems.problem(
                    504,
                    f"The {service} service did not answer in time.",
                    instance=scope["path"],
                    headers={"X-Request-ID": request_id},
                ),
            )
        except UpstreamBroken as exc:
            log.warning("upstream_broken", service=service, error=str(exc))
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "error"
            return await self._respond(
                scope,
                receive,
                send,
                problems.problem(
                    502,
                    f"The {service} service answered badly: {cause}.",
                    instance=scope["path"],
                    headers={"X-Request-ID": request_id},
                ),
            )
        try:
            # The head goes out with the first piece of the body, so a small answer leaves in one go.
            content = response.content
            try:
                chunk = await content.readany()
            except (TimeoutError, aiohttp.ClientError) as exc:
                response.close()
                timed_out = isinstance(exc, TimeoutError)
                log.warning("upstream_body_failed", service=service, error=f"{type(exc).__name__}: {exc}")
                return await self._respond(
                    scope,
                    receive,
                    send,
                    problems.problem(
                        504 if timed_out else 502,
                        f"The {service} service did not answer in time."
                        if timed_out
                        else f"The {service} service answered badly: {type(exc).__name__}.",
                        instance=scope["path"],
                        headers={"X-Request-ID": request_id},
                    ),
                )
            waited = time.perf_counter() - sent_at
            out = [(k, v) for k, v in response.raw_headers if k.lower() not in DROP_RESPONSE]
            out.append((b"x-request-id", request_id.encode("latin-1")))
            own_ms = (time.perf_counter() - started - waited) * 1000
            out.append((b"x-gateway-latency", b"%.3f" % own_ms))
            head_sent[0] = True
            await send({"type": "http.response.start", "status": response.status, "headers": out})
            while True:
                if not chunk:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    break
                if content.at_eof():  # the whole answer is in: one message, not two
                    await send({"type": "http.response.body", "body": chunk, "more_body": False})
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                chunk = await content.readany()
        except BaseException:
            response.close()  # half read: the connection cannot go back to the pool
            raise
        response.release()
        return response.status

    async def _respond(self, scope: Scope, receive: Receive, send: Send, response) -> int:
        await response(scope, receive, send)
        return response.status_code

    async def _problem(self, scope: Scope, receive: Receive, send: Send, exc: DomainError, request_id: str) -> int:
        status = next((st for cls, st in problems.STATUS_OF.items() if isinstance(exc, cls)), 400)
        headers = {"X-Request-ID": request_id}
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = 'Bearer realm="pitcrew"'
        response = problems.problem(
            status,
            exc.detail,
            title=exc.title,
            kind=exc.kind,
            errors_=[e.as_dict() for e in exc.errors] or None,
            instance=scope["path"],
            headers=headers,
        )
        return await self._respond(scope, receive, send, response)


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
