"""Alembic environment of the gateway database."""

from gateway.models import metadata
from shared.migrations import run_env

run_env(metadata)
