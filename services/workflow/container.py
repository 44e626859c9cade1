"""The workflow's domain objects, built once per process (`ServiceSpec.build`).

Routes reach them through the `domain` dependency, handlers and timers through `runtime.domain`.
Calendars and published definition versions never change, so their caches live as long as the
process; `timers` is the service's durable timers table (SLA warnings and breaches); `files` where
attachments are stored (disk or S3-compatible, `file_store`), opened on startup.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy import Table

from services.workflow.calendar_store import Calendars
from services.workflow.definitions import Definitions
from services.workflow.file_store import FileStore, from_settings
from shared.app import Runtime


@dataclass(frozen=True)
class Workflow:
    timers: Table
    files: FileStore
    calendars: Calendars = field(default_factory=Calendars)
    definitions: Definitions = field(default_factory=Definitions)


def build(runtime: Runtime) -> Workflow:
    return Workflow(timers=runtime.infra.timers, files=from_settings(runtime.settings))


async def domain(request: Request) -> Workflow:
    """FastAPI dependency: the workflow's domain objects (async and request-only, as the fast lane needs)."""
    workflow: Workflow = request.app.state.runtime.domain
    return workflow
