"""What the KPI service does on events: each consumed event becomes measurements.

They are written by the same ingest path as POST /v1/measurements, keyed by (source,
external_id), so a redelivered event is a duplicate, never a double count; an event that
cannot become measurements is Invalid and dead-lettered with the reason.

Budget and workflow publish no catalogue yet, so their data is read here with small tolerant
models (fields added later are ignored, a field of the wrong type is named in the reason);
switch to their `events.py` specs once those exist.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from services.kpi import events
from services.kpi.container import Kpi
from services.kpi.ingest import Ingestor
from shared.app import Runtime
from shared.consumer import Handler
from shared.contracts import EventData
from shared.errors import Invalid
from shared.events import Envelope
from shared.uow import UnitOfWork

# Context fields of a workflow instance that become dimensions (for scopes and grouping).
CONTEXT_DIMENSIONS = ("region", "channel", "campaign")
Items = list[dict[str, Any]]


class ActualPosted(EventData):
    """budget.actual.posted as KPI reads it (amount: a decimal string in budget's currency)."""

    entry_id: str | None = None
    line_code: str | None = None
    date: str | None = None
    amount: str | None = None
    currency: str | None = None
    dimensions: dict[str, Any] | None = None


class InstanceFinished(EventData):
    """workflow.instance.approved|rejected|cancelled as KPI reads it."""

    instance_id: str | None = None
    definition_key: str | None = None
    finished_at: str | None = None
    sla_met: bool = False
    cycle_time_business_hours: float | None = None
    context: dict[str, Any] | None = None


class SlaBreached(EventData):
    """workflow.sla.breached as KPI reads it."""

    task_id: str | None = None
    definition_key: str | None = None
    stage: str | None = None
    due_at: str | None = None
    context: dict[str, Any] | None = None


def _read(model: type[EventData], env: Envelope) -> Any:
    try:
        return model.model_validate(env.data)
    except ValidationError as exc:
        errs = "; ".join(f"data.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise Invalid(f"{env.type} event data cannot apply: {errs}") from exc


def _dims(values: dict[str, Any] | None, keys: tuple[str, ...] | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (values or {}).items():
        if (keys is None or k in keys) and v is not None and not isinstance(v, dict | list | bool):
            out[k] = str(v)
    return out


def spend_items(env: Envelope) -> Items:
    d: ActualPosted = _read(ActualPosted, env)
    dims = _dims(d.dimensions)
    if d.line_code:
        dims["line_code"] = d.line_code
    if d.currency:
        dims["currency"] = d.currency
    return [
        {
            "type": "spend",
            "value": d.amount,
            "time": d.date or env.time,
            "dimensions": dims,
            "source": "budget",
            "external_id": str(d.entry_id or env.subject_id),
        }
    ]


def workflow_items(env: Envelope) -> Items:
    d: InstanceFinished = _read(InstanceFinished, env)
    dims = {
        "definition": d.definition_key or "unknown",
        "outcome": env.type.rsplit(".", 1)[-1],
        **_dims(d.context, CONTEXT_DIMENSIONS),
    }
    when = d.finished_at or env.time
    iid = str(d.instance_id or env.subject_id)

    def item(mtype: str, value: str, suffix: str) -> dict[str, Any]:
        return {
            "type": mtype,
            "value": value,
            "time": when,
            "dimensions": dims,
            "source": "workflow",
            "external_id": f"{iid}:{suffix}",
        }

    items = [
        item("workflows_completed", "1", "completed"),
        item("workflows_sla_met", "1" if d.sla_met else "0", "sla_met"),
    ]
    if d.cycle_time_business_hours is not None:  # hours, a number in workflow's event (not money)
        hours = Decimal(str(d.cycle_time_business_hours)).quantize(Decimal("0.000001"))
        items.append(item("approval_cycle_time_hours", str(hours), "cycle_time"))
    return items


def breach_items(env: Envelope) -> Items:
    d: SlaBreached = _read(SlaBreached, env)
    dims = {
        "definition": d.definition_key or "unknown",
        "stage": d.stage or "unknown",
        **_dims(d.context, CONTEXT_DIMENSIONS),
    }
    return [
        {
            "type": "sla_breaches",
            "value": "1",
            "time": d.due_at or env.time,
            "dimensions": dims,
            "source": "workflow",
            "external_id": f"{d.task_id or env.subject_id}:breached",
        }
    ]


async def write(ingestor: Ingestor, uow: UnitOfWork, env: Envelope, items: Items) -> None:
    """The event's measurements in the consumer's unit of work; Invalid (dead-lettered) if any is refused."""
    rows, rejected = ingestor.validate(items, None, default_source=env.source)
    if rejected:
        reasons = "; ".join(f"item {r['index']}: {r['reason']}" for r in rejected)
        raise Invalid(f"{env.type} {env.id} cannot become measurements: {reasons}")
    await ingestor.write(uow, rows, [])


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """Subject -> handler for the events this service consumes."""
    kpi: Kpi = runtime.domain

    def handler(make: Callable[[Envelope], Items]) -> Handler:
        async def handle(uow: UnitOfWork, env: Envelope) -> None:
            await write(kpi.ingestor, uow, env, make(env))

        return handle

    finished = handler(workflow_items)
    return {
        events.ACTUAL_POSTED.subject: handler(spend_items),
        events.INSTANCE_APPROVED.subject: finished,
        events.INSTANCE_REJECTED.subject: finished,
        events.INSTANCE_CANCELLED.subject: finished,
        events.SLA_BREACHED.subject: handler(breach_items),
    }
