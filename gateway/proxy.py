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

A request body is read only once the request is admitted (gateway.request_body: short
bodies in one piece, uploads streamed and counted against the route's cap).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import structlog
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.access import RateLimited, RouteLabel, admit, refusal, route_class
from gateway.request_body import CLIENT_GONE, RequestBody, body_limit, read_head, too_large
from gateway.settings import SERVICE_NAMES
from gateway.state import Gateway, Slot
from gateway.upstream import ServiceDown, UpstreamBroken, UpstreamTimeout
from shared import problems
from shared.context import request_id_var
from shared.errors import DomainError
from shared.observability import LATENCY, REQUESTS, bind_request_id

log = structlog.get_logger("pitcrew.gateway.proxy")
access_log = structlog.get_logger("pitcrew.access")

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


LOCATIONS = frozenset({b"location", b"content-location"})
LABELS = {(svc, cls): RouteLabel(f"/{svc}/* ({cls})") for svc in SERVICE_NAMES for cls in ("read", "write")}
PREFIXES = {svc: len(svc) + 1 for svc in SERVICE_NAMES}
FORWARDED_PREFIX = {svc: f"/{svc}" for svc in SERVICE_NAMES}


class ProxyMiddleware:
    def __init__(self, app: ASGIApp, slot: Slot, service: str = "gateway", access_log: bool = True):
        self.app = app
        self.slot = slot
        self.service = service
        self.access_log = access_log
        # The labelled metric children, looked up once per (method, route, status).
        self._metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}

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
        label = LABELS[(service, route_class(method))]
        scope["route"] = label
        sub = path[cut:] if cut > 0 else "/"
        status = 500
        head_sent = [False]
        try:
            try:
                status = await self._proxy(scope, receive, send, service, sub, method, request_id, started, head_sent)
            except (DomainError, RateLimited) as exc:
                status = await self._respond(scope, receive, send, refusal(exc, path, request_id))
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
        request_id: str,
        started: float,
        head_sent: list[bool],
    ) -> int:
        """Admit, bound the body, forward with the caller's identity minted for the service, relay the answer."""
        gw: Gateway = self.slot.get()
        req = _incoming(scope)
        principal = await admit(gw, req.authorization, req.api_key, service, method, sub)
        # The path as the service will read it: the raw path after its first segment (which decodes
        # to the service's name). An encoded slash would make the service see other segments than
        # the policy judged, so it is refused rather than guessed at.
        raw_path: bytes = scope.get("raw_path") or quote(scope["path"]).encode()
        if b"%" in raw_path and (b"%2f" in raw_path or b"%2F" in raw_path):
            detail = "Encoded slashes (%2F) are not accepted in a path: write each segment plainly."
            return await self._refuse(scope, receive, send, request_id, 400, detail)

        # A request without Content-Length or Transfer-Encoding has no body (RFC 9112 6.3).
        limit = body_limit(gw.settings, service, method, sub)
        if req.length > limit:  # refused unread
            return await self._refuse(scope, receive, send, request_id, 413, too_large(limit))
        content: bytes | RequestBody | None = None
        if req.has_body:
            head, size, more = await read_head(receive)
            if size > limit:
                return await self._refuse(scope, receive, send, request_id, 413, too_large(limit))
            if more is None:
                return await self._refuse(scope, receive, send, request_id, 400, CLIENT_GONE)
            content = RequestBody(receive, limit, head, size) if more else b"".join(head) or None

        headers = req.headers
        headers.append(("x-pitcrew-identity", gw.minter.mint(principal)))
        headers.append(("x-request-id", request_id))
        headers.extend(_forwarded(scope, req, service))
        cut = raw_path.find(b"/", 1)
        target = raw_path[cut:].decode("latin-1") if cut > 0 else "/"
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")

        # A streamed body goes chunked: the gateway counts what it forwards, whatever Content-Length said.
        streamed = content if isinstance(content, RequestBody) else None
        sent_at = time.perf_counter()
        try:
            response = await gw.upstreams.send(service, method, target, headers, content=content)
        except (ServiceDown, UpstreamTimeout, UpstreamBroken) as exc:
            refusal = streamed.refusal(exc) if streamed is not None else None
            if refusal is not None:  # the body's fault (too large, cut, stalled), not the service's
                return await self._refuse(scope, receive, send, request_id, *refusal)
            status, detail, extra = _upstream_failure(exc, service)
            return await self._refuse(scope, receive, send, request_id, status, detail, extra)
        return await self._relay(
            scope, receive, send, response, service, request_id, started, sent_at, head_sent, streamed
        )

    async def _relay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        response: Any,
        service: str,
        request_id: str,
        started: float,
        sent_at: float,
        head_sent: list[bool],
        streamed: RequestBody | None = None,
    ) -> int:
        """Stream the service's answer back; the head goes out with the first piece of the body, so a
        small answer leaves in one go. Internal addresses in Location-like headers are rewritten."""
        gw: Gateway = self.slot.get()
        try:
            content = response.content
            try:
                chunk = await content.readany()
            except (TimeoutError, aiohttp.ClientError) as exc:
                response.close()
                timed_out = isinstance(exc, TimeoutError)
                log.warning("upstream_body_failed", service=service, error=f"{type(exc).__name__}: {exc}")
                detail = (
                    f"The {service} service did not answer in time."
                    if timed_out
                    else f"The {service} service answered badly: {type(exc).__name__}."
                )
                return await self._refuse(scope, receive, send, request_id, 504 if timed_out else 502, detail)
            waited = time.perf_counter() - sent_at
            out = []
            for k, v in response.raw_headers:
                name = k.lower()
                if name in DROP_RESPONSE:
                    continue
                if name in LOCATIONS:
                    v = public_location(v, service, gw.upstreams.services_at)
                out.append((k, v))
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
        if streamed is not None and not streamed.done:
            response.close()  # the service answered before the whole body: stop sending the rest
        else:
            response.release()
        status: int = response.status
        return status

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        status: int,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> int:
        """A problem+json answer of the gateway's own: the request never reached a service, or its answer
        never came back."""
        extra = {**(headers or {}), "X-Request-ID": request_id}
        return await self._respond(
            scope, receive, send, problems.problem(status, detail, instance=scope["path"], headers=extra)
        )

    async def _respond(self, scope: Scope, receive: Receive, send: Send, response: Response) -> int:
        await response(scope, receive, send)
        return response.status_code


class _Incoming:
    """What the gateway reads from a request's headers; the rest is forwarded as it came."""

    __slots__ = ("headers", "authorization", "api_key", "host", "forwarded_for", "has_body", "length")

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.authorization: str | None = None
        self.api_key: str | None = None
        self.host = ""
        self.forwarded_for = ""
        self.has_body = False
        self.length = -1


def _incoming(scope: Scope) -> _Incoming:
    req = _Incoming()
    for name, value in scope["headers"]:
        if name not in DROP_REQUEST:
            req.headers.append((name.decode("latin-1"), value.decode("latin-1")))
        elif name == b"authorization":
            req.authorization = value.decode("latin-1")
        elif name == b"x-api-key":
            req.api_key = value.decode("latin-1")
        elif name == b"host":
            req.host = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            req.forwarded_for = value.decode("latin-1")
        elif name == b"content-length":
            req.has_body = True
            req.length = int(value) if value.isdigit() else -1
        elif name == b"transfer-encoding":
            req.has_body = True
    return req


def _forwarded(scope: Scope, req: _Incoming, service: str) -> list[tuple[str, str]]:
    """The X-Forwarded-* headers a service behind the gateway reads (for its links and its logs)."""
    client = scope.get("client")
    client_ip = client[0] if client else ""
    out = [
        ("x-forwarded-for", f"{req.forwarded_for}, {client_ip}" if req.forwarded_for else client_ip),
        ("x-forwarded-proto", scope.get("scheme", "http")),
    ]
    if req.host:
        out.append(("x-forwarded-host", req.host))
    out.append(("x-forwarded-prefix", FORWARDED_PREFIX[service]))
    return out


def _upstream_failure(exc: Exception, service: str) -> tuple[int, str, dict[str, str] | None]:
    """The answer to a service that could not be reached (503), was too slow (504) or answered badly (502)."""
    if isinstance(exc, ServiceDown):
        log.warning("upstream_down", service=service, error=str(exc))
        return 503, f"The {service} service is not reachable; try again shortly.", {"Retry-After": "2"}
    if isinstance(exc, UpstreamTimeout):
        return 504, f"The {service} service did not answer in time.", None
    log.warning("upstream_broken", service=service, error=str(exc))
    cause = type(exc.__cause__).__name__ if exc.__cause__ else "error"
    return 502, f"The {service} service answered badly: {cause}.", None


def public_location(value: bytes, service: str, services_at: dict[str, str]) -> bytes:
    """A service's Location (or Content-Location) as the client must see it: an absolute URL on a
    service's own address (a trailing-slash redirect builds one from the Host it was sent) or a path
    in the service's own space becomes the path under that service's prefix; no internal address
    leaves the gateway. Other URLs (another site's) pass unchanged."""
    text = value.decode("latin-1")
    url = urlsplit(text)
    if url.netloc:
        owner = services_at.get(url.netloc.lower())
        if owner is None:
            return value
        service, text = owner, url.path or "/"
        if url.query:
            text += "?" + url.query
        if url.fragment:
            text += "#" + url.fragment
    elif not text.startswith("/") or text.startswith("//"):
        return value  # relative to the request's own path: right as it is
    prefix = FORWARDED_PREFIX[service]
    if text == prefix or text.startswith(prefix + "/"):
        return text.encode("latin-1")
    return (prefix + text).encode("latin-1")
