"""Alembic environment of the budget database."""

from services.budget.models import metadata
from shared.migrations import run_env

run_env(metadata)
