"""Who is calling: bearer JWTs (HS256 dev secret or an OIDC provider's JWKS) and API keys.

Everything here answers a `Principal` or raises `Unauthorized`; no HTTP framework
is involved so the pure-ASGI proxy and the FastAPI routes share it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
import structlog
from jwt.types import Options

from gateway import keys
from gateway.settings import Settings
from shared.db import Database
from shared.errors import Unauthorized
from shared.identity import ROLES, Principal, storable

log = structlog.get_logger("pitcrew.gateway.auth")

_KNOWN_ROLES = frozenset(ROLES)
_VERIFIED_CACHE_SECONDS = 60.0
_VERIFIED_CACHE_MAX = 10_000


class JWKSCache:
    """An OIDC provider's signing keys, fetched with httpx and kept by `kid`.

    Refetched when older than `cache_seconds`, and at once for an unknown `kid`
    (key rotation) but at most once per `min_refresh_seconds`, so a flood of
    tokens with made-up kids cannot turn the gateway into a JWKS hammer.
    """

    def __init__(self, url: str, client: httpx.AsyncClient, *, cache_seconds: float, min_refresh_seconds: float):
        self.url = url
        self.client = client
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at = float("-inf")
        self.fetches = 0
        self._lock = asyncio.Lock()

    async def get(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        if now - self.fetched_at > self.cache_seconds:
            await self._refresh(force=True)
        elif kid not in self.keys:
            await self._refresh(force=False)
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        key = self.keys.get(kid or "")
        if key is None:
            raise Unauthorized(f"The token's signing key {kid!r} is not published by the identity provider.")
        return key

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            now = time.monotonic()
            if now - self.fetched_at < self.min_refresh_seconds and not (
                force and now - self.fetched_at > self.cache_seconds
            ):
                return
            try:
                r = await self.client.get(self.url, timeout=5.0)
                r.raise_for_status()
                found: dict[str, jwt.PyJWK] = {}
                for jwk in r.json().get("keys", []):
                    if jwk.get("use", "sig") != "sig":
                        continue
                    try:
                        found[jwk.get("kid", "")] = jwt.PyJWK(jwk)
                    except jwt.PyJWKError as exc:
                        log.warning("jwks_key_skipped", kid=jwk.get("kid"), error=str(exc))
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("jwks_fetch_failed", url=self.url, error=str(exc))
                self.fetched_at = now  # keep the old keys, retry after the rate limit
                if not self.keys:
                    raise Unauthorized("The identity provider's keys cannot be fetched; try again shortly.") from exc
                return
            self.keys = found
            self.fetched_at = now
            self.fetches += 1


class Authenticator:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        # Its own small client: the identity provider is not one of the upstream services.
        self.client = httpx.AsyncClient(timeout=5.0)
        self.jwks = (
            JWKSCache(
                settings.jwks_url,
                self.client,
                cache_seconds=settings.jwks_cache_seconds,
                min_refresh_seconds=settings.jwks_min_refresh_seconds,
            )
            if settings.jwks_url
            else None
        )
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def aclose(self) -> None:
        await self.client.aclose()

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """The caller from `Authorization: Bearer ...` or `X-API-Key`, or a 401."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("Use 'Authorization: Bearer <token>' (or X-API-Key for integrations).")
            return await self.bearer(token.strip())
        if api_key:
            return await keys.authenticate(self.db, api_key)
        raise Unauthorized("Authentication required: send 'Authorization: Bearer <token>' or 'X-API-Key'.")

    async def bearer(self, token: str) -> Principal:
        now = time.time()
        hit = self._verified.get(token)
        if hit is not None and hit[1] > now:
            return hit[0]
        claims = await self._decode(token)
        principal = Principal(
            subject=storable(str(claims["sub"]), "sub"),  # (an OIDC sub may be 255; ours are 200)
            roles=frozenset(r for r in _as_list(_claim(claims, self.settings.roles_claim)) if r in _KNOWN_ROLES),
            scopes=frozenset(storable(v, "scope") for v in _as_list(_claim(claims, self.settings.scopes_claim))),
            kind="user",
        )
        if len(self._verified) >= _VERIFIED_CACHE_MAX:
            self._verified.clear()
        # A verified token stays valid until its exp; remember it briefly, never past exp.
        self._verified[token] = (principal, min(float(claims["exp"]), now + _VERIFIED_CACHE_SECONDS))
        return principal

    async def _decode(self, token: str) -> dict[str, Any]:
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"The bearer token is not a JWT: {exc}.") from exc
        alg = header.get("alg")
        options: Options = {"require": ["exp", "iss", "aud", "sub"]}
        try:
            if alg == "HS256" and s.jwt_secret:
                return jwt.decode(
                    token,
                    s.jwt_secret,
                    algorithms=["HS256"],
                    audience=s.jwt_audience,
                    issuer=s.jwt_issuer,
                    leeway=s.jwt_leeway_seconds,
                    options=options,
                )
            if self.jwks is not None and alg in s.oidc_algorithms:
                key = await self.jwks.get(header.get("kid"))
                return jwt.decode(
                    token,
                    key,
                    algorithms=s.oidc_algorithms,
                    audience=s.oidc_audience or s.jwt_audience,
                    issuer=s.oidc_issuer or s.jwt_issuer,
                    leeway=s.jwt_leeway_seconds,
                    options=options,
                )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The bearer token has expired.") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthorized("The bearer token is not valid yet (nbf/iat in the future).") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("The bearer token was issued by an issuer this gateway does not trust.") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("The bearer token is meant for another audience.") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"The bearer token is invalid: {exc}.") from exc
        raise Unauthorized(f"The bearer token's algorithm {alg!r} is not accepted here.")


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple | set | frozenset):
        return [str(v) for v in value]
    return []
