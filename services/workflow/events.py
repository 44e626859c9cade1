"""What the workflow service consumes (docs/events.md); it publishes through the engine's outbox calls.

Each handler runs inside the consumer's transaction with the inbox row, so a
redelivered event starts no second instance. Each first checks what it takes from the
event (`event_data`) and raises Invalid, which the consumer dead-letters at once: an
event that can never apply must not crash and be redelivered.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.workflow.api import engine_of
from services.workflow.schemas import field_name, json_problems
from shared.app import Runtime
from shared.consumer import Handler
from shared.errors import Errors, Invalid
from shared.events import Envelope
from shared.identity import SUBJECT_MAX

FALLBACK = {"budget.commitment.requested": "budget-approval", "registry.renewal.due": "tool-renewal"}
ID_MAX = 200  # instances.subject_id is VARCHAR(200); requester is SUBJECT_MAX wide
CORRELATION_MAX = 100  # instances.correlation_id is VARCHAR(100)


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


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """Subject -> handler for the events this service consumes."""
    engine = engine_of(runtime)

    async def start_for(
        s: AsyncSession, env: Envelope, context: dict[str, Any], subject: dict[str, str], requester: str
    ) -> None:
        definition = await engine.match_definition(s, env.type, context)
        if definition is None:
            definition = await engine.get_definition(s, FALLBACK[env.type])
        await engine.start(s, definition, subject, context, requester, env.correlation_id or env.id)

    async def commitment_requested(s: AsyncSession, env: Envelope) -> None:
        data = event_data(env, objects=("dimensions",), texts=("requested_by",), ids=("commitment_id",))
        await start_for(
            s,
            env,
            commitment_context(data),
            {"type": "commitment", "id": str(data.get("commitment_id") or env.subject_id), "service": "budget"},
            str(data.get("requested_by") or "service:budget"),
        )

    async def renewal_due(s: AsyncSession, env: Envelope) -> None:
        data = event_data(env, ids=("contract_id",))
        await start_for(
            s,
            env,
            dict(data),
            {"type": "contract", "id": str(data.get("contract_id") or env.subject_id), "service": "registry"},
            "service:registry",
        )

    return {"budget.commitment.requested": commitment_requested, "registry.renewal.due": renewal_due}


def timer_handlers(runtime: Runtime) -> dict[str, Any]:
    """Timer kind -> handler: SLA warning and breach, fired once in the scheduler's transaction."""
    from services.workflow.engine import BREACH, WARNING

    engine = engine_of(runtime)
    return {WARNING: engine.on_warning, BREACH: engine.on_breach}
