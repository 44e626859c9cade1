"""Bearer JWTs: the development HS256 secret and an OIDC provider's JWKS with key rotation."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.settings import Settings
from pitcrew.launcher import free_port
from shared.settings import DEV_JWT_SECRET
from tests.gateway.conftest import assert_problem, bearer, gateway_settings, running_gateway

pytestmark = pytest.mark.db

ISSUER = "https://idp.example.test/realms/pitcrew"
AUDIENCE = "pitcrew-api"


def claims(**overrides) -> dict:
    now = dt.datetime.now(dt.UTC)
    base = {
        "iss": "pitcrew-dev",
        "aud": "pitcrew",
        "sub": "dana",
        "roles": ["admin"],
        "scopes": [],
        "iat": now,
        "nbf": now,
        "exp": now + dt.timedelta(minutes=5),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs(secret: str = DEV_JWT_SECRET, **overrides) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm="HS256")


async def test_dev_token_is_accepted_and_bad_tokens_are_401(gw, token):
    assert (await gw.get("/budget/v1/items", headers=bearer(token("admin")))).status_code == 200
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    cases = {
        "forged": hs(secret="not-the-gateway-secret-but-32-bytes-long!!"),
        "expired": hs(exp=past, iat=past - dt.timedelta(minutes=5), nbf=None),
        "wrong issuer": hs(iss="someone-else"),
        "wrong audience": hs(aud="another-api"),
        "not yet valid": hs(nbf=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)),
        "no subject": hs(sub=None),
        # Subjects the services could not store as an author (a 500 on every write before).
        "subject too long": hs(sub="u" * 201),
        "subject with a lone surrogate": hs(sub="dana\ud800"),
        "subject with a control character": hs(sub="dana\n"),
        "scope with a lone surrogate": hs(scopes=["region:\ud800"]),
        "alg none": jwt.encode(claims(), None, algorithm="none"),
        "garbage": "not.a.jwt",
    }
    for name, tok in cases.items():
        r = await gw.get("/budget/v1/items", headers=bearer(tok))
        body = assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer"), name
        if name in ("expired", "wrong issuer", "wrong audience"):
            assert name.split()[-1] in body["detail"] or "expired" in body["detail"], (name, body["detail"])
    assert_problem(await gw.get("/budget/v1/items"), 401)
    assert_problem(await gw.get("/budget/v1/items", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}), 401)


async def test_leeway_accepts_small_clock_skew(gw):
    skew = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
    tok = hs(exp=skew, iat=skew - dt.timedelta(minutes=5), nbf=None)
    assert (await gw.get("/budget/v1/items", headers=bearer(tok))).status_code == 200


async def test_unknown_roles_in_a_token_grant_nothing(gw):
    r = await gw.get("/budget/v1/items", headers=bearer(hs(roles=["superuser", "root"])))
    assert_problem(r, 403)


def _hs256_by_hand(body: dict, key: bytes, kid: str) -> str:
    """What an attacker would send: HS256 keyed with the public key (PyJWT refuses to make one)."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(body, default=lambda d: int(d.timestamp())).encode())
    sig = b64(hmac.new(key, f"{head}.{payload}".encode(), hashlib.sha256).digest())
    return f"{head}.{payload}.{sig}"


class FakeOIDC:
    """A real HTTP server publishing a JWKS; `rotate()` replaces the signing key."""

    def __init__(self):
        self.port = free_port()
        self.keys: list[tuple[str, object, str]] = []  # (kid, private key, alg)
        self.requests = 0
        self.rotate()
        self.add_ec()
        oidc = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                oidc.requests += 1
                body = json.dumps({"keys": [oidc.public_jwk(k) for k in oidc.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/protocol/openid-connect/certs"

    def rotate(self) -> None:
        """A new RSA key replaces every RSA key (the old one is no longer published)."""
        self.keys = [k for k in self.keys if k[2] != "RS256"]
        self.keys.append(
            (uuid.uuid4().hex[:12], rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
        )

    def add_ec(self) -> None:
        self.keys.append((uuid.uuid4().hex[:12], ec.generate_private_key(ec.SECP256R1()), "ES256"))

    def public_jwk(self, key) -> dict:
        kid, private, alg = key
        algo = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
        jwk = json.loads(algo.to_jwk(private.public_key()))
        return {**jwk, "kid": kid, "alg": alg, "use": "sig"}

    def token(self, key=None, **overrides) -> str:
        kid, private, alg = key or next(k for k in self.keys if k[2] == "RS256")
        body = claims(**{"iss": ISSUER, "aud": AUDIENCE, "roles": None, "scopes": None, **overrides})
        return jwt.encode(body, private, algorithm=alg, headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def oidc():
    server = FakeOIDC()
    yield server
    server.close()


async def test_jwks_tokens_with_nested_role_claims_and_key_rotation(new_db, net, oidc):
    settings = gateway_settings(
        await new_db("gateway"),
        jwks_url=oidc.url,
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        roles_claim="realm_access.roles",
        scopes_claim="scope",
        jwks_min_refresh_seconds=0.0,
    )
    async with running_gateway(settings) as gw:
        old_key = next(k for k in oidc.keys if k[2] == "RS256")
        tok = oidc.token(
            sub="oidc-user", realm_access={"roles": ["finance", "offline_access"]}, scope="region:EMEA region:APAC"
        )
        r = await gw.get("/budget/v1/items", headers=bearer(tok))
        assert r.status_code == 200, r.text
        r = await gw.post("/budget/v1/echo", json={}, headers=bearer(tok))
        assert r.json()["principal"] == {
            "subject": "oidc-user",
            "roles": ["finance"],
            "scopes": ["region:APAC", "region:EMEA"],
            "kind": "user",
            "request_id": r.headers["x-request-id"],
        }
        ec_key = next(k for k in oidc.keys if k[2] == "ES256")
        r = await gw.get("/budget/v1/items", headers=bearer(oidc.token(ec_key, realm_access={"roles": ["analyst"]})))
        assert r.status_code == 200, r.text
        fetches = oidc.requests

        # The provider rotates: a token with the new kid triggers one refetch and passes.
        oidc.rotate()
        new = oidc.token(realm_access={"roles": ["admin"]})
        assert (await gw.get("/kpi/v1/items", headers=bearer(new))).status_code == 200
        assert oidc.requests == fetches + 1
        assert (await gw.get("/kpi/v1/items", headers=bearer(new))).status_code == 200
        assert oidc.requests == fetches + 1  # cached
        # A token signed with the retired key is refused.
        stale = oidc.token(old_key, sub="other", realm_access={"roles": ["admin"]})
        body = assert_problem(await gw.get("/kpi/v1/items", headers=bearer(stale)), 401)
        assert "signing key" in body["detail"]
        # Wrong issuer / audience / forged signature with a published kid are refused too.
        assert_problem(await gw.get("/kpi/v1/items", headers=bearer(oidc.token(iss="https://evil.test"))), 401)
        assert_problem(await gw.get("/kpi/v1/items", headers=bearer(oidc.token(aud="other"))), 401)
        current = next(k for k in oidc.keys if k[2] == "RS256")
        impostor = (current[0], rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
        assert_problem(await gw.get("/kpi/v1/items", headers=bearer(oidc.token(impostor))), 401)
        # An HS256 token made with the RSA public key as secret (algorithm confusion) is refused.
        pem = (
            current[1]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        confused = _hs256_by_hand(claims(iss=ISSUER, aud=AUDIENCE), pem, kid=current[0])
        assert_problem(await gw.get("/kpi/v1/items", headers=bearer(confused)), 401)


async def test_unknown_kid_refetches_are_rate_limited(new_db, net, oidc):
    settings = gateway_settings(
        await new_db("gateway"),
        jwks_url=oidc.url,
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        jwks_min_refresh_seconds=60.0,
    )
    async with running_gateway(settings) as gw:
        assert (await gw.get("/kpi/v1/items", headers=bearer(oidc.token(roles=["admin"])))).status_code == 200
        fetches = oidc.requests
        for i in range(5):
            fake = jwt.encode(
                claims(iss=ISSUER, aud=AUDIENCE), oidc.keys[0][1], algorithm="RS256", headers={"kid": f"made-up-{i}"}
            )
            assert_problem(await gw.get("/kpi/v1/items", headers=bearer(fake)), 401)
        assert oidc.requests == fetches  # no refetch within the interval


def test_production_refuses_the_development_secret():
    with pytest.raises(ValueError, match="development secret"):
        Settings(environment="production", identity_secret="x" * 40)
