"""Gateway settings (env prefix PITCREW_GATEWAY_)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import DEV_JWT_SECRET, BaseServiceSettings

SERVICE_NAMES = ("budget", "workflow", "kpi", "registry", "notify")
DEFAULT_POLICY = str(Path(__file__).with_name("policy.yaml"))


class Settings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PITCREW_GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    port: int = 8000

    # Development tokens (HS256): what `pitcrew token` mints.
    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str = "pitcrew-dev"
    jwt_audience: str = "pitcrew"
    jwt_leeway_seconds: float = 30.0
    # Production tokens (RS256/ES256) from an OIDC provider's JWKS.
    jwks_url: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_algorithms: list[str] = ["RS256", "ES256"]
    jwks_cache_seconds: float = 300.0
    jwks_min_refresh_seconds: float = 10.0  # at most one refetch per interval on unknown `kid`
    roles_claim: str = "roles"  # dotted path, e.g. realm_access.roles
    scopes_claim: str = "scopes"  # list or space-separated string

    # Upstreams: each may list several comma-separated base URLs (balanced round robin).
    budget_url: str = "http://127.0.0.1:8001"
    workflow_url: str = "http://127.0.0.1:8002"
    kpi_url: str = "http://127.0.0.1:8003"
    registry_url: str = "http://127.0.0.1:8004"
    # The web console, served at `/` (every path that is not the API); empty: none (`pitcrew up` sets it).
    console_url: str = ""
    notify_url: str = "http://127.0.0.1:8005"
    connect_timeout_seconds: float = 2.0
    upstream_timeout_seconds: float = 30.0
    max_connections: int = 400  # open connections to all services together (aiohttp's pool limit)
    # Request bodies, by route class (413 beyond): proxied to a service; the gateway's own API and
    # every other route of its own; a webhook delivery.
    max_request_body_bytes: int = 10 * 1024 * 1024
    # The upload routes (request_body.UPLOADS: workflow's request attachments, 25 MiB a file) take this instead.
    upload_max_body_bytes: int = 25 * 1024 * 1024
    api_max_body_bytes: int = 64 * 1024
    webhook_max_body_bytes: int = 1024 * 1024
    unhealthy_seconds: float = 2.0  # skip an upstream that refused a connection for this long
    # Idle pooled connections are dropped after this long: below the services' own keep-alive
    # timeout (uvicorn: 5 s), so the gateway never sends on a connection the service is closing.
    upstream_keepalive_seconds: float = 4.0

    # Authorization.
    policy_path: str = DEFAULT_POLICY

    # Rate limits (`limits` notation), per principal and route class.
    rate_limit_storage_url: str = "memory://"
    rate_limit_read: str = "1200/minute"
    rate_limit_write: str = "300/minute"
    rate_limit_webhook: str = "1200/minute"

    # Webhooks.
    webhook_secrets: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    webhook_tolerance_seconds: int = 300
    webhook_max_attempts: int = 25
    webhook_poll_seconds: float = 1.0
    webhook_retry_base_seconds: float = 1.0
    webhook_retry_max_seconds: float = 300.0

    # CORS: the browser origins allowed to call the API (JSON list, e.g. ["https://app.example.com"]);
    # none by default, and then no CORS header is ever sent. Credentials (cookies, TLS client
    # certificates) only when switched on, and never with "*".
    cors_origins: list[str] = Field(default_factory=list)
    cors_allow_credentials: bool = False
    cors_max_age_seconds: int = 600

    # Health and merged OpenAPI.
    openapi_cache_seconds: float = 30.0
    health_timeout_seconds: float = 2.0

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _parse_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value or "{}")
            if not isinstance(value, dict):
                raise ValueError('must be a JSON object such as {"erp": "...", "crm": "..."}')
        return value

    @model_validator(mode="after")
    def _refuse_dev_jwt_secret(self) -> Settings:
        if self.environment == "production" and self.jwt_secret == DEV_JWT_SECRET:
            raise ValueError("PITCREW_GATEWAY_JWT_SECRET is the development secret; refusing to start in production")
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError(
                "PITCREW_GATEWAY_CORS_ALLOW_CREDENTIALS with the origin '*' would let any site call the API "
                "with a visitor's credentials; list the origins"
            )
        return self

    def service_urls(self) -> dict[str, str]:
        """The first base URL of each service (what a single-replica setup uses)."""
        return {name: urls[0] for name, urls in self.upstreams().items()}

    def upstreams(self) -> dict[str, list[str]]:
        """Every base URL of each service, in order."""
        out = {}
        for name in SERVICE_NAMES:
            raw: str = getattr(self, f"{name}_url")
            out[name] = [u.strip().rstrip("/") for u in raw.split(",") if u.strip()]
        return out
