"""What every test suite shares: identities as the gateway would mint them, and problem assertions.

Each service's conftest builds its app and clients on these, so a change to how identities or
problems look is made once.
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.identity import HEADER, Principal, mint
from shared.settings import DEV_IDENTITY_SECRET


def principal(subject: str = "dana", *roles: str, scopes: tuple[str, ...] | list[str] = ()) -> Principal:
    """A principal with these roles (admin when none are given) and scopes."""
    return Principal(subject=subject, roles=frozenset(roles or ("admin",)), scopes=frozenset(scopes))


# Long enough for a whole suite on a slow machine: headers minted when a test module is imported
# must still be valid when its last test runs (300 s were not, under load).
TTL = 6 * 3600


def identity(
    subject: str = "dana", *roles: str, scopes: tuple[str, ...] | list[str] = (), ttl: int = TTL
) -> dict[str, str]:
    """The `X-Pitcrew-Identity` header of `principal(subject, *roles, scopes=scopes)`."""
    return {HEADER: mint(principal(subject, *roles, scopes=scopes), DEV_IDENTITY_SECRET, ttl_seconds=ttl)}


def header_of(p: Principal, ttl: int = TTL) -> dict[str, str]:
    return {HEADER: mint(p, DEV_IDENTITY_SECRET, ttl_seconds=ttl)}


def assert_problem(r: httpx.Response, status: int, *fields: str) -> dict[str, Any]:
    """`r` is an RFC 9457 problem with `status`; with `fields`, its `errors` name exactly those fields."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers.get("content-type")
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"], body
    if fields:
        assert [e["field"] for e in body.get("errors") or []] == list(fields), body
    return body


def fields_of(problem: dict[str, Any]) -> set[str]:
    return {e["field"] for e in problem.get("errors") or []}
