"""Alembic environment of the registry database."""

from services.registry.models import metadata
from shared.migrations import run_env

run_env(metadata)
