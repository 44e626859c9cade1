"""Console settings (env prefix PITCREW_CONSOLE_)."""

from __future__ import annotations

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from gateway.settings import DEFAULT_POLICY
from shared.settings import BaseServiceSettings

DEV_SESSION_SECRET = "pitcrew-dev-console-session-secret-change-me"


class Settings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PITCREW_CONSOLE_", extra="ignore")

    service_name: str = "console"
    port: int = 8006
    # Where the console calls the public API, server side, with the signed-in person's token.
    gateway_url: str = "http://127.0.0.1:8000"
    api_timeout_seconds: float = 15.0
    # The session cookie: signed (itsdangerous), HttpOnly, SameSite=Lax; Secure when served over HTTPS.
    session_secret: str = DEV_SESSION_SECRET
    session_max_age_seconds: int = 8 * 3600
    secure_cookies: bool = False
    # What the console shows a role (it hides what the gateway would refuse; the gateway still decides).
    policy_path: str = DEFAULT_POLICY
    default_timezone: str = "Europe/Berlin"
    default_locale: str = "en"
    reporting_currency: str = "EUR"  # the currency KPI money figures are kept in (the KPI service's)
    # OIDC authorization code + PKCE; off unless an issuer is configured.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scopes: str = "openid profile email"
    oidc_redirect_url: str | None = None  # e.g. https://pitcrew.example.com/auth/callback
    roles_claim: str = "roles"
    scopes_claim: str = "scopes"

    @property
    def dev_signin(self) -> bool:
        """Acting as anyone is for development only: never in production."""
        return self.environment != "production"

    @model_validator(mode="after")
    def _refuse_dev_session_secret(self) -> Settings:
        if self.environment == "production" and self.session_secret == DEV_SESSION_SECRET:
            raise ValueError(
                "PITCREW_CONSOLE_SESSION_SECRET is the development secret; refusing to start in production"
            )
        return self
