"""Settings of the registry service (env prefix PITCREW_REGISTRY_)."""

from __future__ import annotations

import datetime as dt

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.money import EXPONENTS
from shared.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PITCREW_REGISTRY_", extra="ignore")

    service_name: str = "registry"
    port: int = 8004
    # `registry.renewal.due` fires this many days before a contract term's notice deadline ...
    renewal_lead_days: int = Field(default=30, ge=0)
    # ... at this UTC time of day (a reminder at 08:00 reads better than one at midnight).
    renewal_fire_time: dt.time = dt.time(8, 0)
    # Each term's renewal milestones (`registry.renewal.milestone`), in days before its notice deadline, at
    # `renewal_fire_time` UTC; a contract may set its own (PUT /v1/contracts/{id}/milestones).
    renewal_milestones: list[int] = Field(default=[120, 90, 60, 30], max_length=12)

    @field_validator("renewal_milestones")
    @classmethod
    def _milestones(cls, value: list[int]) -> list[int]:
        if any(not 0 <= d <= 3650 for d in value):
            raise ValueError("milestones are 0 to 3650 days before the notice deadline")
        return sorted(set(value), reverse=True)

    # Overlaps and stack cost are reported in this currency (other currencies need a posted FX rate).
    base_currency: str = "EUR"
    # Utilization counts snapshots from this many days back; below `underused_below` a tool is underused.
    utilization_window_days: int = Field(default=30, ge=1)
    underused_below: float = Field(default=0.5, ge=0, le=1)
    # Seat right-sizing keeps this share above the people active in the last 90 days.
    rightsizing_headroom: float = Field(default=0.1, ge=0, le=10)
    # One graph request (`/v1/graph`, `/v1/analysis`) reads at most this many tools and integrations that
    # are not retired (a 422 beyond them); the analysis runs off the event loop for at most this long.
    graph_max_tools: int = Field(default=20_000, ge=1)
    graph_max_integrations: int = Field(default=100_000, ge=1)
    analysis_seconds: float = Field(default=20.0, gt=0)
    # An export writes at most this many tools, off the event loop, for at most this long (a 422 beyond).
    export_max_tools: int = Field(default=20_000, ge=1)
    export_seconds: float = Field(default=60.0, gt=0)

    @field_validator("base_currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        if value.upper() not in EXPONENTS:
            raise ValueError(f"{value!r} is not an ISO 4217 currency code")
        return value.upper()
