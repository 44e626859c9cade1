"""A small OIDC provider for tests, over real HTTP: discovery, authorize (signs in a preset user at
once), token (checks the PKCE verifier, the redirect URI and the client), JWKS. RS256 keys."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route


class FakeProvider:
    def __init__(self, client_id: str = "pitcrew-console", audience: str = "pitcrew"):
        self.client_id = client_id
        self.audience = audience
        self.issuer = ""  # set once the server has its port
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        self.user: dict[str, Any] = {
            "sub": "ada",
            "roles": ["finance"],
            "scopes": ["region:EMEA"],
            "name": "Ada",
            "zoneinfo": "Asia/Tokyo",
        }
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests: list[dict[str, str]] = []
        self.nonce_override: str | None = None
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    def sign(self, claims: dict[str, Any], key: Any = None) -> str:
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})

    async def discovery(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def jwks(self, request: Request) -> JSONResponse:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return JSONResponse({"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

    async def authorize(self, request: Request) -> RedirectResponse:
        q = request.query_params
        assert q["response_type"] == "code" and q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {k: q[k] for k in ("client_id", "redirect_uri", "code_challenge", "nonce")}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}", 302)

    async def token(self, request: Request) -> JSONResponse:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.token_requests.append(form)
        grant = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (
            grant is None
            or grant["client_id"] != form.get("client_id")
            or grant["redirect_uri"] != form.get("redirect_uri")
            or grant["code_challenge"] != challenge
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        base = {"iss": self.issuer, "sub": self.user["sub"], "iat": now, "exp": now + 600}
        id_token = self.sign(
            {
                **base,
                "aud": self.client_id,
                "nonce": self.nonce_override or grant["nonce"],
                "name": self.user["name"],
                "zoneinfo": self.user["zoneinfo"],
            }
        )
        access = self.sign({**base, "aud": self.audience, "roles": self.user["roles"], "scopes": self.user["scopes"]})
        return JSONResponse({"access_token": access, "id_token": id_token, "token_type": "Bearer", "expires_in": 600})
