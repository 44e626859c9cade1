"""Settings base: one pydantic-settings class per service, one env prefix each.

Values every process shares (the NATS URL, the internal identity key, the
environment) are read from their un-prefixed names too, so one `.env` serves
the whole suite while a service can still override them with its own prefix.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_IDENTITY_SECRET = "pitcrew-dev-internal-identity-key-change-me"
DEV_JWT_SECRET = "pitcrew-dev-jwt-secret-change-me-please-32b"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


class BaseServiceSettings(BaseSettings):
    """What every Pitcrew process needs; subclasses set `env_prefix` and `service_name`."""

    model_config = SettingsConfigDict(env_prefix="PITCREW_", extra="ignore", env_file=None)

    service_name: str = "pitcrew"
    environment: Literal["development", "test", "production"] = Field(
        default_factory=lambda: _env("PITCREW_ENVIRONMENT", "development")  # type: ignore[arg-type]
    )
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = ""
    # PostgreSQL run-time parameters set on every pooled connection (asyncpg server_settings).
    database_server_settings: dict[str, str] = {}
    # SQLite only: the process's writes wait in one fair queue instead of SQLite's busy handler.
    sqlite_write_queue: bool = True
    nats_url: str = Field(default_factory=lambda: _env("PITCREW_NATS_URL", "nats://127.0.0.1:4222"))
    nats_enabled: bool = True
    nats_stream_replicas: int = Field(
        default_factory=lambda: int(_env("PITCREW_NATS_STREAM_REPLICAS", "1")), ge=1, le=5
    )
    identity_secret: str = Field(default_factory=lambda: _env("PITCREW_IDENTITY_SECRET", DEV_IDENTITY_SECRET))
    identity_ttl_seconds: int = 60
    # Plain JSON POSTs skip FastAPI's router and dependency solving (shared/fastlane.py); off: all through it.
    fast_lane: bool = True
    outbox_poll_seconds: float = 0.5
    outbox_batch_size: int = 500
    consumer_max_deliver: int = 5
    consumer_ack_wait_seconds: float = 30.0
    log_level: str = Field(default_factory=lambda: _env("PITCREW_LOG_LEVEL", "INFO"))
    log_json: bool = True
    var_dir: str = Field(default_factory=lambda: _env("PITCREW_VAR_DIR", "./var"))
    # Prometheus scrapes /metrics here, a port of its own that the Service and the ingress never
    # expose; on the app's port /metrics answers only an admin identity. None: no metrics port.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"

    @model_validator(mode="after")
    def _defaults_and_production_guard(self) -> BaseServiceSettings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.var_dir}/{self.service_name}.db"
        if self.environment == "production":
            self.refuse_development_secrets()
        return self

    def refuse_development_secrets(self) -> None:
        if self.identity_secret == DEV_IDENTITY_SECRET or len(self.identity_secret) < 32:
            raise ValueError(
                "PITCREW_IDENTITY_SECRET is the development key (or shorter than 32 bytes); "
                "refusing to start in production"
            )


# Webhook secrets `pitcrew up` gives the gateway in development, so the demo can sign
# ERP and CRM deliveries; production sets PITCREW_GATEWAY_WEBHOOK_SECRETS itself.
DEV_WEBHOOK_SECRETS = {"erp": "pitcrew-dev-erp-webhook-secret", "crm": "pitcrew-dev-crm-webhook-secret"}
