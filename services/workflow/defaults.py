"""What the service ships: the `default` calendar, the two definitions events start when no
published definition matches them (`budget-approval`, `budget-request`, `tool-renewal`), and the request types of
`intake_forms` with their definitions. Created once, whatever the replicas: each is published as
exactly version 1, and a racing replica's insert wins harmlessly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError

from services.workflow.calendar_store import create_calendar
from services.workflow.container import Workflow
from services.workflow.definitions import DEFAULT_CALENDAR, create_definition
from services.workflow.events import ON_BUDGET_REQUEST, ON_COMMITMENT_REQUESTED, ON_RENEWAL_DUE
from services.workflow.instances import SYSTEM
from services.workflow.intake import create_request_type
from services.workflow.intake_forms import REQUEST_DEFINITIONS, REQUEST_TYPES
from services.workflow.models import calendars, definitions, request_types
from services.workflow.request_schemas import RequestTypeIn
from services.workflow.schemas import CalendarIn, DefinitionIn
from shared.app import Runtime
from shared.errors import Conflict
from shared.identity import Principal
from shared.uow import UnitOfWork

SYSTEM_PRINCIPAL = Principal(subject=SYSTEM, roles=frozenset({"admin"}), kind="service")

DEFAULT_CALENDAR_DOC = CalendarIn(
    key=DEFAULT_CALENDAR,
    timezone="UTC",
    hours={d: ["09:00", "17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
)
BUDGET_APPROVAL = "budget-approval"
BUDGET_REQUEST = "budget-request"
TOOL_RENEWAL = "tool-renewal"
DEFAULT_DEFINITIONS: list[dict[str, Any]] = [
    {
        "key": BUDGET_APPROVAL,
        "name": "Budget commitment approval",
        "description": "Shipped default for commitments over threshold or over the money available.",
        "trigger": {"event": ON_COMMITMENT_REQUESTED.subject, "conditions": [], "priority": -1000},
        "stages": [
            {
                "name": "Regional approval",
                "assignees": {"roles": ["approver"], "users": [], "scope_from_context": ["region"]},
                "mode": "any",
                "sla": {"business_hours": "8", "calendar": DEFAULT_CALENDAR, "warn_at": "0.75"},
                "escalation": {"reassign_to_role": "mops"},
            }
        ],
    },
    {
        "key": BUDGET_REQUEST,
        "name": "Bottom-up budget request",
        "description": "Shipped default: finance approves a line owner's requested amounts (approval allocates them).",
        "trigger": {"event": ON_BUDGET_REQUEST.subject, "conditions": [], "priority": -1000},
        "stages": [
            {
                "name": "Finance review",
                "assignees": {"roles": ["finance"], "users": [], "scope_from_context": ["region"]},
                "mode": "any",
                "sla": {"business_hours": "40", "calendar": DEFAULT_CALENDAR, "warn_at": "0.75"},
                "escalation": {"notify": ["admin", "finance"]},
            }
        ],
    },
    {
        "key": TOOL_RENEWAL,
        "name": "Martech tool renewal review",
        "description": "Shipped default: marketing ops decides before the contract's notice deadline.",
        "trigger": {"event": ON_RENEWAL_DUE.subject, "conditions": [], "priority": -1000},
        "stages": [
            {
                "name": "Renewal review",
                "assignees": {"roles": ["mops"], "users": []},
                "mode": "any",
                "sla": {"deadline_from_context": "notice_deadline", "calendar": DEFAULT_CALENDAR, "warn_at": "0.75"},
                "escalation": {"notify": ["admin", "mops"]},
            }
        ],
    },
]
# The definition an event starts when no published one matches it.
FALLBACK = {
    ON_COMMITMENT_REQUESTED.subject: BUDGET_APPROVAL,
    ON_BUDGET_REQUEST.subject: BUDGET_REQUEST,
    ON_RENEWAL_DUE.subject: TOOL_RENEWAL,
}


async def ensure_defaults(runtime: Runtime, wf: Workflow) -> None:
    """Create the shipped calendar, definitions and request types if missing."""
    async with runtime.unit_of_work() as uow:
        exists = await uow.scalar(select(calendars.c.id).where(calendars.c.key == DEFAULT_CALENDAR))
    if not exists:
        try:
            async with runtime.unit_of_work() as uow:
                await create_calendar(uow, SYSTEM_PRINCIPAL, body=DEFAULT_CALENDAR_DOC)
        except (IntegrityError, Conflict):
            pass
    for doc in [*DEFAULT_DEFINITIONS, *REQUEST_DEFINITIONS]:
        if await _missing(runtime, definitions, doc["key"]):
            body = DefinitionIn.model_validate(doc)
            await _ship(
                runtime,
                partial(create_definition, who=SYSTEM_PRINCIPAL, body=body, calendars=wf.calendars, version=1),
            )
    for doc in REQUEST_TYPES:
        if await _missing(runtime, request_types, doc["key"]):
            rt_body = RequestTypeIn.model_validate(doc)
            await _ship(runtime, partial(create_request_type, who=SYSTEM_PRINCIPAL, body=rt_body, version=1))


async def _missing(runtime: Runtime, table: Table, key: str) -> bool:
    async with runtime.unit_of_work() as uow:
        return await uow.scalar(select(table.c.id).where(table.c.key == key).limit(1)) is None


async def _ship(runtime: Runtime, publish: Callable[[UnitOfWork], Awaitable[object]]) -> None:
    """Publish version 1 in a transaction of its own; another replica having done it is fine."""
    try:
        async with runtime.unit_of_work() as uow:
            await publish(uow)
    except (IntegrityError, Conflict):
        pass
