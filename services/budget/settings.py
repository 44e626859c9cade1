"""Settings of the budget service (env prefix PITCREW_BUDGET_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PITCREW_BUDGET_", extra="ignore")

    service_name: str = "budget"
    port: int = 8001
