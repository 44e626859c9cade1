"""Alembic environment of the notify database."""

from services.notify.models import metadata
from shared.migrations import run_env

run_env(metadata)
