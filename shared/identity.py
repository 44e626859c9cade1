"""Internal identity: the short-lived token the gateway puts in `X-Pitcrew-Identity`.

Services trust nothing else about the caller: no client-supplied role, no
header but this one, verified with the internal key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from fastapi import Request

from shared.context import Actor, actor_var, request_id_var
from shared.errors import Forbidden, Unauthorized

HEADER = "X-Pitcrew-Identity"
ISSUER = "pitcrew-gateway"
AUDIENCE = "pitcrew-services"
ALGORITHM = "HS256"

ROLES = ("admin", "mops", "finance", "approver", "marketer", "analyst", "partner", "supplier")
SUBJECT_MAX = 200  # the width of the author columns (created_by, decided_by, ...) in every service


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    request_id: str | None = None
    kind: str = "user"  # user | api_key | service

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @functools.cached_property
    def scoped_dimensions(self) -> dict[str, frozenset[str]]:
        """Each dimension this principal is narrowed on (`region:EMEA` narrows region), with its values."""
        out: dict[str, set[str]] = {}
        for sc in self.scopes:
            dim, sep, value = sc.partition(":")
            if sep:
                out.setdefault(dim, set()).add(value)
        return {d: frozenset(v) for d, v in out.items()}

    def scope_values(self, dimension: str) -> frozenset[str] | None:
        """The values this principal is narrowed to on a dimension; None means not narrowed."""
        return self.scoped_dimensions.get(dimension)

    def may_see(self, dimensions: Mapping[str, object] | None) -> bool:
        """True when every scoped dimension of the principal admits the row's value on it.

        A row without a value on a scoped dimension is outside the scope: `region:None` or
        `region:` must not reach the lines that have no region."""
        dims = dimensions or {}
        for dim, allowed in self.scoped_dimensions.items():
            value = dims.get(dim)
            if not isinstance(value, str) or not value or value not in allowed:
                return False
        return True

    def may_change(self, before: Mapping[str, object] | None, after: Mapping[str, object] | None) -> bool:
        """A write is in scope only when the row is in scope both as it is and as it will be."""
        return self.may_see(before) and self.may_see(after)

    @property
    def unscoped(self) -> bool:
        """Not narrowed on any dimension: may change what spans every row (a whole plan, a rate, a policy)."""
        return not self.scoped_dimensions

    def delegates(self, scopes: Iterable[str]) -> bool:
        """True when `scopes` are at least as narrow as this principal's own, dimension by dimension,
        so whoever receives them (an API key this principal issues) can reach no row it cannot."""
        theirs = Principal("delegate", scopes=frozenset(scopes)).scoped_dimensions
        return all(dim in theirs and theirs[dim] <= values for dim, values in self.scoped_dimensions.items())


def mint(principal: Principal, secret: str, ttl_seconds: int = 60) -> str:
    now = dt.datetime.now(dt.UTC)
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": principal.subject,
        "roles": sorted(principal.roles),
        "scopes": sorted(principal.scopes),
        "rid": principal.request_id or uuid.uuid4().hex,
        "knd": principal.kind,
        "iat": now,
        "exp": now + dt.timedelta(seconds=ttl_seconds),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(token: str, secret: str, *, leeway: float = 5.0) -> Principal:
    return _principal(_claims(token, secret, leeway))


def _claims(token: str, secret: str, leeway: float) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=leeway,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The identity token has expired.") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"The identity token is invalid: {exc}.") from exc


def storable(text: str, what: str) -> str:
    """A subject or scope the services can store as an author: 1-SUBJECT_MAX printable characters
    (a longer one, or one with a control character or lone surrogate, made every write a 500)."""
    if not 0 < len(text) <= SUBJECT_MAX or not text.isprintable():
        raise Unauthorized(f"The token's {what} must be 1 to {SUBJECT_MAX} printable characters.")
    return text


def _principal(claims: dict[str, Any]) -> Principal:
    return Principal(
        subject=storable(str(claims["sub"]), "sub"),
        roles=frozenset(claims.get("roles") or ()),
        scopes=frozenset(claims.get("scopes") or ()),
        request_id=claims.get("rid"),
        kind=claims.get("knd", "user"),
    )


class Verifier:
    """`verify` that checks each distinct token once.

    The gateway forwards the same token for one principal for a while, so a
    token already verified needs only its expiry checked again: the same bytes
    under the same key verify the same way. Bounded, and emptied when full."""

    MAX_TOKENS = 10_000

    def __init__(self, secret: str, *, leeway: float = 5.0):
        self.secret, self.leeway = secret, leeway
        self._seen: dict[str, tuple[Principal, float]] = {}  # token -> (principal, valid until)

    def __call__(self, token: str) -> Principal:
        seen = self._seen.get(token)
        if seen is not None and time.time() < seen[1]:
            return seen[0]
        claims = _claims(token, self.secret, self.leeway)
        principal = _principal(claims)
        if len(self._seen) >= self.MAX_TOKENS:
            self._seen.clear()
        self._seen[token] = (principal, float(claims["exp"]) + self.leeway)
        return principal


def service_principal(service: str) -> Principal:
    """How one service identifies itself when it calls another directly."""
    return Principal(subject=f"service:{service}", roles=frozenset({"admin"}), kind="service")


async def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the verified caller, or a 401 problem."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = request.headers.get(HEADER)
    if not token:
        raise Unauthorized(
            f"Missing {HEADER}: services are reached only through the Pitcrew gateway.",
        )
    principal: Principal = request.app.state.identity(token)
    if principal.request_id is None:  # the gateway's token is per principal; the request id rides beside it
        principal = dataclasses.replace(principal, request_id=request_id_var.get())
    request.state.principal = principal
    act_for(principal, request)
    return principal


def act_for(principal: Principal, request: Request) -> None:
    """Make `principal` the author of whatever this request changes (shared.audit), with the id the
    request travels under."""
    rid = request_id_var.get() or principal.request_id
    actor_var.set(Actor(principal.subject, principal.kind, rid, request.method, request.url.path[:300]))


def require_roles(*roles: str, unscoped: str | None = None) -> Callable[..., object]:
    """Dependency factory: the caller must hold one of `roles` (admin always may).

    With `unscoped` (what the routes change, e.g. "A metric definition"), the caller must also be
    narrowed by no dimension scope: the rows they change carry no dimensions, so they reach every scope."""

    allowed = set(roles) | {"admin"}

    async def _check(request: Request) -> Principal:
        principal = await current_principal(request)
        if not principal.roles.intersection(allowed):
            raise Forbidden(f"This action needs one of the roles: {', '.join(sorted(allowed))}.")
        if unscoped is not None:
            ensure_unscoped(principal, unscoped)
        return principal

    return _check


def ensure_scope(principal: Principal, dimensions: dict[str, object] | None, what: str = "this resource") -> None:
    if not principal.may_see(dimensions):
        raise Forbidden(f"Your scopes ({', '.join(sorted(principal.scopes))}) do not cover {what}.")


def ensure_unscoped(principal: Principal, what: str) -> None:
    """A change that spans every row (a plan's settings, a definition, a catalogue entry without
    dimensions) needs a principal no dimension scope narrows: `region:EMEA` may not change APAC's too."""
    if not principal.unscoped:
        raise Forbidden(
            f"{what} applies beyond your scopes ({', '.join(sorted(principal.scopes))}); ask "
            "someone without dimension scopes."
        )


def roles_of(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v for v in values if v)
