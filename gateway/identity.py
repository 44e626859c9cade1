"""Minting the internal X-Pitcrew-Identity on the hot path.

The token is what `shared.identity.mint` makes (same claims, HS256, verified by
`shared.identity.verify` in every service), built from PyJWT's own base64url
helper and a precomputed HMAC key: about five times cheaper than `jwt.encode`,
which re-validates the key and re-serialises the header on every call.

One token per principal is reused for the first half of its lifetime, so a
service verifies its signature once (`shared.identity.Verifier`) instead of on
every request. It carries only what the principal is (issuer, audience,
subject, roles, scopes, kind), and the principal is the cache key: a change of
roles or scopes is a different principal and gets a new token at once. The
request id travels beside it in X-Request-ID.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from jwt.utils import base64url_encode

from shared.identity import ALGORITHM, AUDIENCE, ISSUER, Principal

_HEADER = base64url_encode(json.dumps({"alg": ALGORITHM, "typ": "JWT"}, separators=(",", ":")).encode())
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_PRINCIPALS_MAX = 10_000


class IdentityMinter:
    def __init__(self, secret: str, ttl_seconds: int):
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        self.ttl = ttl_seconds
        self._tokens: dict[Principal, tuple[str, float]] = {}  # principal -> (token, reuse until)

    def mint(self, principal: Principal) -> str:
        now = time.time()
        kept = self._tokens.get(principal)
        if kept is not None and now < kept[1]:
            return kept[0]
        if len(self._tokens) >= _PRINCIPALS_MAX:
            self._tokens.clear()
        iat = int(now)
        payload = _dumps(
            {
                "iss": ISSUER,
                "aud": AUDIENCE,
                "sub": principal.subject,
                "roles": sorted(principal.roles),
                "scopes": sorted(principal.scopes),
                "knd": principal.kind,
                "iat": iat,
                "exp": iat + self.ttl,
            }
        )
        signing_input = _HEADER + b"." + base64url_encode(payload.encode())
        mac = self._mac.copy()
        mac.update(signing_input)
        token = (signing_input + b"." + base64url_encode(mac.digest())).decode()
        self._tokens[principal] = (token, iat + self.ttl / 2)
        return token
