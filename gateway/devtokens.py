"""Development tokens: HS256 JWTs signed with PITCREW_GATEWAY_JWT_SECRET (what `pitcrew token` prints)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

import jwt

from gateway.settings import Settings


def mint_dev_token(
    settings: Settings, sub: str, roles: Iterable[str], scopes: Iterable[str] = (), ttl: int = 3600
) -> str:
    now = dt.datetime.now(dt.UTC)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": sub,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + dt.timedelta(seconds=ttl),
        "roles": sorted(set(roles)),
        "scopes": sorted(set(scopes)),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
