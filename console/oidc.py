"""OIDC sign-in: authorization code with PKCE (S256), state and nonce, against the configured provider.

httpx for the provider's endpoints, PyJWT for the ID token (signature from the provider's JWKS,
issuer, audience = our client id, nonce, expiry). The access token is what the console sends to
the gateway, which verifies it again against the same JWKS: the console decides nothing with it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import jwt
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from console.settings import Settings
from console.signin import safe_next
from console.web import Page, Person, Refused, anyone, remember

router = APIRouter()
DISCOVERY_SECONDS = 300.0


class Provider:
    """The provider's metadata and keys, fetched on first use and kept for a few minutes."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.issuer = (settings.oidc_issuer or "").rstrip("/")
        self.meta: dict[str, Any] = {}
        self.keys: jwt.PyJWKSet | None = None
        self.fetched = float("-inf")

    async def metadata(self, client: httpx.AsyncClient, *, refresh: bool = False) -> dict[str, Any]:
        if refresh or not self.meta or time.monotonic() - self.fetched > DISCOVERY_SECONDS:
            try:
                r = await client.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5.0)
                r.raise_for_status()
                meta = r.json()
                jwks = await client.get(meta["jwks_uri"], timeout=5.0)
                jwks.raise_for_status()
                self.keys = jwt.PyJWKSet.from_dict(jwks.json())
            except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWKSetError) as exc:
                raise Refused(
                    "The sign-in provider cannot be reached right now. Try again in a moment.", status=503
                ) from exc
            self.meta, self.fetched = meta, time.monotonic()
        return self.meta

    def key(self, kid: str | None) -> Any:
        for k in self.keys.keys if self.keys else []:
            if kid is None or k.key_id == kid:
                return k.key
        return None


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _redirect_uri(request: Request, settings: Settings) -> str:
    if settings.oidc_redirect_url:
        return settings.oidc_redirect_url
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    proto = request.headers.get("x-forwarded-proto") or request.url.scheme
    return f"{proto}://{host}/auth/callback"


def _provider(page: Page) -> Provider:
    provider: Provider | None = page.request.app.state.oidc
    if provider is None:
        raise Refused("Single sign-on is not configured here.", status=404)
    return provider


@router.get("/auth/login")
async def login(page: Page = Depends(anyone), next: str = "/") -> Response:
    provider = _provider(page)
    meta = await provider.metadata(page.request.app.state.http)
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(64)
    page.request.session["oidc"] = {"state": state, "nonce": nonce, "verifier": verifier, "next": safe_next(next)}
    query = {
        "response_type": "code",
        "client_id": page.settings.oidc_client_id,
        "redirect_uri": _redirect_uri(page.request, page.settings),
        "scope": page.settings.oidc_scopes,
        "state": state,
        "nonce": nonce,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    }
    return RedirectResponse(f"{meta['authorization_endpoint']}?{urlencode(query)}", status_code=303)


@router.get("/auth/callback")
async def callback(
    page: Page = Depends(anyone), code: str = "", state: str = "", error: str = "", error_description: str = ""
) -> Response:
    provider = _provider(page)
    pending = page.request.session.pop("oidc", None)
    if error:
        raise Refused(f"The sign-in provider refused: {error_description or error}. Try signing in again.")
    if not pending or not code or not secrets.compare_digest(state, pending.get("state", "")):
        raise Refused(
            "This sign-in answer does not belong to a sign-in started here. Start again from the sign-in page."
        )
    tokens = await _exchange(page, provider, code, pending["verifier"])
    claims = _verify_id_token(page.settings, provider, tokens.get("id_token", ""), pending["nonce"])
    access = str(tokens.get("access_token") or "")
    # Roles and scopes for display (and hiding) only: the gateway reads them again from the verified token.
    shown = jwt.decode(access, options={"verify_signature": False}) if access.count(".") == 2 else claims
    roles = sorted(set(_as_list(_claim(shown, page.settings.roles_claim))))
    scopes = sorted(set(_as_list(_claim(shown, page.settings.scopes_claim))))
    expires = float(shown.get("exp") or time.time() + int(tokens.get("expires_in") or 300))
    person = Person(
        str(claims["sub"]),
        roles,
        scopes,
        access,
        expires - 30,
        "oidc",
        _zone(claims.get("zoneinfo"), page.settings.default_timezone),  # the standard claim, when the provider has it
        claims.get("name") or claims.get("email"),
    )
    remember(page.request, person)
    return page.back(pending.get("next") or "/")


async def _exchange(page: Page, provider: Provider, code: str, verifier: str) -> dict[str, Any]:
    meta = await provider.metadata(page.request.app.state.http)
    s = page.settings
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": _redirect_uri(page.request, s),
        "client_id": s.oidc_client_id,
        "code_verifier": verifier,
    }
    auth = (s.oidc_client_id or "", s.oidc_client_secret) if s.oidc_client_secret else None
    try:
        r = await page.request.app.state.http.post(meta["token_endpoint"], data=form, auth=auth, timeout=10.0)
    except httpx.HTTPError as exc:
        raise Refused("The sign-in provider cannot be reached right now. Try again in a moment.", status=503) from exc
    if r.status_code != 200:
        raise Refused("The sign-in provider did not accept the sign-in (the code may have expired). Start again.")
    tokens: dict[str, Any] = r.json()
    return tokens


def _verify_id_token(settings: Settings, provider: Provider, token: str, nonce: str) -> dict[str, Any]:
    try:
        key = provider.key(jwt.get_unverified_header(token).get("kid"))
        if key is None:
            raise jwt.InvalidTokenError("unknown signing key")
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256", "ES256"],
            audience=settings.oidc_client_id,
            issuer=provider.issuer,
            leeway=30,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.InvalidTokenError as exc:
        raise Refused(f"The sign-in could not be verified ({exc}). Start again from the sign-in page.") from exc
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise Refused("The sign-in could not be verified (nonce mismatch). Start again from the sign-in page.")
    return claims


def _zone(value: object, default: str) -> str:
    name = str(value or "")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return default
    return name


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value] if isinstance(value, list | tuple) else []
