"""Who may pass the gateway: authenticate, refuse path tricks, authorize by the policy, rate-limit.

One order for every guarded request, proxied or the gateway's own (`/gateway/v1/...`):
the credential first, so an anonymous caller learns nothing else and sends nothing that
is read; then the path as it will be routed; then the policy; then the caller's rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from gateway.state import Gateway
from shared import problems
from shared.errors import DomainError, Forbidden, Unauthorized
from shared.identity import Principal

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ANONYMOUS = Principal(subject="anonymous", roles=frozenset(), kind="anonymous")


@dataclass(frozen=True)
class RouteLabel:
    """What the metrics read as the route: a class of routes, never the raw path."""

    path: str


class RateLimited(HTTPException):
    """429 with Retry-After: the caller's requests of this class are over its limit."""

    def __init__(self, route_class: str, limit: str, retry_after: float):
        seconds = str(int(retry_after))
        super().__init__(
            429,
            f"Rate limit for {route_class} requests ({limit}) exceeded; retry in {seconds} s.",
            headers={"Retry-After": seconds},
        )


def route_class(method: str) -> str:
    return "read" if method in READ_METHODS else "write"


def has_dot_segment(path: str) -> bool:
    return "/." in path and any(seg in (".", "..") for seg in path.split("/"))


async def admit(
    gw: Gateway, authorization: str | None, api_key: str | None, service: str, method: str, path: str
) -> Principal:
    """The caller, allowed to `method` `path` (as `service` sees it) and within its rate; or raise
    Unauthorized (401), Forbidden (403) or RateLimited (429). A path the policy lists as public (a
    signed link in an e-mail) is passed without a credential, as `anonymous` with no role."""
    if authorization is None and api_key is None and gw.policy.is_public(service, method, path):
        if has_dot_segment(path):
            raise Forbidden("Paths with '.' or '..' segments are not forwarded.")
        retry_after = await gw.limiter.check(route_class(method), ANONYMOUS.subject)
        if retry_after is not None:
            raise RateLimited(route_class(method), gw.limiter.describe(route_class(method)), retry_after)
        return ANONYMOUS
    principal = await gw.auth.authenticate(authorization, api_key)
    if has_dot_segment(path):
        raise Forbidden("Paths with '.' or '..' segments are not forwarded.")
    if not gw.policy.allows(principal.roles, service, method, path):
        roles = ", ".join(sorted(principal.roles)) or "none"
        raise Forbidden(f"Your roles ({roles}) may not {method} {service} {path}.")
    unconfined = gw.policy.unconfined(principal.roles, principal.scopes)
    if unconfined:
        raise Forbidden(unconfined)
    cls = route_class(method)
    retry_after = await gw.limiter.check(cls, principal.subject)
    if retry_after is not None:
        raise RateLimited(cls, gw.limiter.describe(cls), retry_after)
    return principal


def refusal(exc: DomainError | HTTPException, instance: str, request_id: str | None = None) -> JSONResponse:
    """The problem+json answer to a refused request (what the app's problem handlers would send)."""
    headers = {"X-Request-ID": request_id} if request_id else {}
    if isinstance(exc, HTTPException):
        headers.update(exc.headers or {})
        return problems.problem(exc.status_code, str(exc.detail), instance=instance, headers=headers)
    status = next((st for cls, st in problems.STATUS_OF.items() if isinstance(exc, cls)), 400)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="pitcrew"'
    return problems.problem(
        status,
        exc.detail,
        title=exc.title,
        kind=exc.kind,
        errors_=[e.as_dict() for e in exc.errors] or None,
        instance=instance,
        headers=headers,
    )
