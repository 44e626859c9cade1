"""Settings of the notify service (env prefix PITCREW_NOTIFY_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import BaseServiceSettings

DEV_LINK_SECRET = "pitcrew-dev-notify-link-secret-change-me-32b"


class Settings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PITCREW_NOTIFY_", extra="ignore")

    service_name: str = "notify"
    port: int = 8005
    # Where e-mail goes: smtp://[user:password@]host:port[?starttls=true] or smtps://... (implicit TLS).
    # `pitcrew up` points it at a local sink that stores every message under ./var/mail.
    smtp_url: str = "smtp://127.0.0.1:8025"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str = "Pitcrew <notify@pitcrew.local>"
    # The address people reach Pitcrew at (the gateway): links in messages start with it.
    public_url: str = "http://127.0.0.1:8000"
    # Where notify calls the workflow service to decide a task from an e-mail link (under the person's identity).
    workflow_url: str = "http://127.0.0.1:8002"
    # Signs action and unsubscribe links (itsdangerous); production must set its own.
    link_secret: str = DEV_LINK_SECRET
    action_link_hours: float = Field(default=72.0, gt=0)
    # Partner URLs, Slack and Teams webhooks may not point at loopback, link-local or private addresses
    # unless this is on (development and tests only).
    allow_private_urls: bool = False
    # The delivery queue: how often it looks for due messages, how many per pass, and the backoff.
    delivery_poll_seconds: float = Field(default=0.5, gt=0)
    delivery_batch: int = Field(default=100, ge=1)
    delivery_concurrency: int = Field(default=10, ge=1)
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    # A message to a person is given up (status failed) after this many attempts.
    max_attempts: int = Field(default=50, ge=1)
    # Partner subscriptions are retried with exponential backoff for this long, then disabled.
    subscription_retry_seconds: float = Field(default=3 * 24 * 3600.0, gt=0)
    subscription_timeout_seconds: float = Field(default=10.0, gt=0)
    # Per person and channel: at most this many messages per window; the rest are folded into one summary.
    rate_limit_count: int = Field(default=20, ge=1)
    rate_limit_window_seconds: int = Field(default=3600, ge=60)
    # When the daily digest goes out, in each person's own time zone.
    digest_hour: int = Field(default=8, ge=0, le=23)
    # Who hears about an event whose data names no owner: the people holding these roles.
    line_owner_roles: list[str] = ["finance"]
    metric_owner_roles: list[str] = ["mops"]
    tool_owner_roles: list[str] = ["mops"]
    # Who hears, instead of the requester, about a request notify never saw submitted (its requester unknown).
    request_owner_roles: list[str] = ["mops"]

    def refuse_development_secrets(self) -> None:
        super().refuse_development_secrets()
        if self.link_secret == DEV_LINK_SECRET or len(self.link_secret) < 32:
            raise ValueError("PITCREW_NOTIFY_LINK_SECRET is the development key (or too short); refusing to start")
