"""What the workflow does on events and timers: a budget commitment request, a bottom-up budget request or
a renewal falling due starts the best matching definition (or the shipped default); a budget campaign's
event updates the campaigns the calendar shows (`campaigns`); SLA timers warn and breach.

Each event handler runs inside the consumer's transaction with the inbox row, so a redelivered
event starts no second instance. Each first checks what it takes from the event (`event_data`) and
raises Invalid, which the consumer dead-letters at once: an event that can never apply must not
crash and be redelivered.
"""

from __future__ import annotations

from typing import Any

from services.registry.events import RENEWAL_DUE
from services.workflow import campaigns, deliverable_sla, lifecycle, sla
from services.workflow.container import Workflow
from services.workflow.defaults import FALLBACK
from services.workflow.definitions import get_definition, match_definition
from services.workflow.events import ON_BUDGET_REQUEST, ON_CAMPAIGN_CREATED, ON_COMMITMENT_REQUESTED
from services.workflow.schemas import field_name, json_problems
from shared.app import Runtime
from shared.consumer import Handler
from shared.contracts import EventData, EventSpec
from shared.errors import Errors, Invalid
from shared.events import Envelope
from shared.identity import SUBJECT_MAX
from shared.timers import TimerHandler
from shared.uow import UnitOfWork

ID_MAX = 200  # instances.subject_id is VARCHAR(200); requester is SUBJECT_MAX wide
CORRELATION_MAX = 100  # instances.correlation_id is VARCHAR(100)


class BudgetCommitmentRequested(EventData):
    """What workflow reads of budget's `budget.commitment.requested`: tolerant where budget's own model
    (`services.budget.events.COMMITMENT_REQUESTED`) is strict, so an event without a commitment id or
    requester still starts its approval with the fallbacks (the envelope's subject id,
    `service:budget`); every other field lands in the instance's context as it came."""

    commitment_id: str | int | None = None
    requested_by: str | None = None
    dimensions: dict[str, Any] | None = None


COMMITMENT_REQUESTED_DATA = EventSpec(
    ON_COMMITMENT_REQUESTED.subject, BudgetCommitmentRequested, ON_COMMITMENT_REQUESTED.summary
)


class BudgetRequestSubmitted(EventData):
    """What workflow reads of budget's `budget.request.submitted` (tolerant, as for commitments): the
    request is the instance's subject; every field lands in the context as it came."""

    request_id: str | int | None = None
    requested_by: str | None = None
    dimensions: dict[str, Any] | None = None


BUDGET_REQUEST_DATA = EventSpec(ON_BUDGET_REQUEST.subject, BudgetRequestSubmitted, ON_BUDGET_REQUEST.summary)


def event_data(
    env: Envelope, *, objects: tuple[str, ...] = (), texts: tuple[str, ...] = (), ids: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The event's data, or Invalid naming each bad field (data.<path>): an object of JSON the
    context can hold (schemas.json_problems: nesting, numbers finite and below 2**53, storable
    text), `objects` absent/null or objects, `texts` absent/null/empty or 1-200 printable
    characters, `ids` the same or integers. The envelope's subject_id (the subject when no id is
    given) and correlation (correlation_id, else id) must fit their columns."""
    data = env.data
    errors = Errors()
    if not isinstance(data, dict):
        raise Invalid.on("data", f"must be an object, not {type(data).__name__}")
    for path, message in json_problems(data):
        errors.add(field_name("data", path), message)
    for name in objects:
        if data.get(name) is not None and not isinstance(data[name], dict):
            errors.add(f"data.{name}", f"must be an object, not {type(data[name]).__name__}")
    for name in (*texts, *ids):
        value = data.get(name)
        limit = ID_MAX if name in ids else SUBJECT_MAX
        if value in (None, "") or (name in ids and type(value) is int):
            continue
        if not isinstance(value, str):
            errors.add(f"data.{name}", f"must be text, not {type(value).__name__}")
        elif not _printable(value, limit):
            errors.add(f"data.{name}", f"must be 1 to {limit} printable characters")
    if all(data.get(name) in (None, "") for name in ids) and not _printable(env.subject_id, ID_MAX):
        errors.add("subject_id", f"must be 1 to {ID_MAX} printable characters")
    if not _printable(env.correlation_id or env.id, CORRELATION_MAX):
        errors.add(
            "correlation_id" if env.correlation_id else "id", f"must be 1 to {CORRELATION_MAX} printable characters"
        )
    errors.raise_if_any(
        f"{env.type} event {env.id[:CORRELATION_MAX]!r} cannot apply: "
        + "; ".join(f"{e.field}: {e.message}" for e in errors.items[:5])
    )
    return data


def _printable(value: Any, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and value.isprintable()


def commitment_context(data: dict[str, Any]) -> dict[str, Any]:
    """The event's data with the line's dimensions flattened in (region, channel, ...) and kept as well."""
    dims = data.get("dimensions") or {}
    return {**{k: v for k, v in dims.items() if v is not None}, **data}


async def start_for(
    uow: UnitOfWork, wf: Workflow, env: Envelope, context: dict[str, Any], subject: dict[str, str], requester: str
) -> None:
    """Start the best definition the event triggers, else the shipped default for its subject."""
    definition = await match_definition(uow, env.type, context)
    if definition is None:
        definition = await get_definition(uow, FALLBACK[env.type])
    await lifecycle.start(
        uow,
        wf,
        definition,
        subject=subject,
        context=context,
        requester=requester,
        correlation_id=env.correlation_id or env.id,
    )


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """Subject -> handler for the events this service consumes."""
    wf: Workflow = runtime.domain

    async def commitment_requested(uow: UnitOfWork, env: Envelope) -> None:
        data = event_data(env, objects=("dimensions",), texts=("requested_by",), ids=("commitment_id",))
        request = COMMITMENT_REQUESTED_DATA.read(data)
        subject = {"type": "commitment", "id": str(request.commitment_id or env.subject_id), "service": "budget"}
        await start_for(uow, wf, env, commitment_context(data), subject, request.requested_by or "service:budget")

    async def budget_request(uow: UnitOfWork, env: Envelope) -> None:
        data = event_data(env, objects=("dimensions",), texts=("requested_by",), ids=("request_id",))
        request = BUDGET_REQUEST_DATA.read(data)
        subject = {"type": "budget_request", "id": str(request.request_id or env.subject_id), "service": "budget"}
        await start_for(uow, wf, env, commitment_context(data), subject, request.requested_by or "service:budget")

    async def renewal_due(uow: UnitOfWork, env: Envelope) -> None:
        data = event_data(env, ids=("contract_id",))
        renewal = RENEWAL_DUE.read(data)
        subject = {"type": "contract", "id": renewal.contract_id or env.subject_id, "service": "registry"}
        await start_for(uow, wf, env, dict(data), subject, "service:registry")

    async def campaign_changed(uow: UnitOfWork, env: Envelope) -> None:
        await campaigns.remember(uow, env)

    return {
        ON_COMMITMENT_REQUESTED.subject: commitment_requested,
        ON_BUDGET_REQUEST.subject: budget_request,
        RENEWAL_DUE.subject: renewal_due,
        ON_CAMPAIGN_CREATED.subject: campaign_changed,
    }


def timer_handlers(runtime: Runtime) -> dict[str, TimerHandler]:
    """Timer kind -> handler: SLA warning and breach, fired once in the scheduler's transaction."""
    wf: Workflow = runtime.domain

    async def warning(uow: UnitOfWork, timer: Any) -> None:
        await sla.on_warning(uow, wf, timer)

    async def breach(uow: UnitOfWork, timer: Any) -> None:
        await sla.on_breach(uow, wf, timer)

    async def deliverable_warning(uow: UnitOfWork, timer: Any) -> None:
        await deliverable_sla.on_warning(uow, wf, timer)

    async def deliverable_breach(uow: UnitOfWork, timer: Any) -> None:
        await deliverable_sla.on_breach(uow, wf, timer)

    return {
        sla.WARNING: warning,
        sla.BREACH: breach,
        deliverable_sla.WARNING: deliverable_warning,
        deliverable_sla.BREACH: deliverable_breach,
    }
