"""Settings of the budget service (env prefix PITCREW_BUDGET_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PITCREW_BUDGET_", extra="ignore")

    service_name: str = "budget"
    port: int = 8001
    # The posting statement (services/budget/posting.py) is one large prepared statement whose JSON
    # parameters tell the planner nothing: a custom plan per execution only adds planning time.
    database_server_settings: dict[str, str] = {"plan_cache_mode": "force_generic_plan"}
    # Group commit (PostgreSQL): concurrent postings that are each a request's whole unit of work share
    # one statement and one commit (services/budget/posting.py, Batcher); 0 turns it off. The value is
    # how many such statements one process keeps in flight at once.
    group_commit_statements: int = 2
