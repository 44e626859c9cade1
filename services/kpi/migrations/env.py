"""Alembic environment of the kpi database."""

from services.kpi.models import metadata
from shared.migrations import run_env

run_env(metadata)
