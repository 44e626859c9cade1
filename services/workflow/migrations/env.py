"""Alembic environment of the workflow database."""

from services.workflow.models import metadata
from shared.migrations import run_env

run_env(metadata)
