"""What the KPI service does on events: each consumed event becomes measurements.

They are written by the same ingest path as POST /v1/measurements, keyed by (source,
external_id), so a redelivered event is a duplicate, never a double count. Each event's data is
read with its publisher's contract (`services.budget.events`, `services.workflow.events`,
`services.registry.events`): a
field that is missing or of the wrong type is Invalid naming it, and so is an event that cannot
become measurements; the consumer dead-letters both with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from services.budget import events as budget
from services.kpi.container import Kpi
from services.kpi.ingest import Ingestor
from services.registry import events as registry
from services.workflow import events as workflow
from shared.app import Runtime
from shared.consumer import Handler
from shared.errors import Invalid
from shared.events import Envelope
from shared.uow import UnitOfWork

# Context fields of a workflow instance that become dimensions (for scopes and grouping).
CONTEXT_DIMENSIONS = ("region", "channel", "campaign")
Items = list[dict[str, Any]]
FINISHED = {s.subject: s for s in (workflow.INSTANCE_APPROVED, workflow.INSTANCE_REJECTED, workflow.INSTANCE_CANCELLED)}


def _dims(values: dict[str, Any] | None, keys: tuple[str, ...] | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (values or {}).items():
        if (keys is None or k in keys) and v is not None and not isinstance(v, dict | list | bool):
            out[k] = str(v)
    return out


def spend_items(env: Envelope) -> Items:
    """budget.actual.posted: one `spend` measurement per ledger entry (a reversal's is negative).

    The campaign the entry funds (a budget campaign's code) is its `campaign` dimension, ahead of
    the line's own: leads and revenue tagged with the same code give cost per lead and ROI per
    campaign."""
    d = budget.ACTUAL_POSTED.read(env.data)
    dims = {**_dims(d.dimensions), "line_code": d.line_code, "currency": d.currency}
    if d.campaign_code:
        dims["campaign"] = d.campaign_code
    return [
        {
            "type": "spend",
            "value": d.amount,
            "time": d.date,
            "dimensions": dims,
            "source": "budget",
            "external_id": d.entry_id,
        }
    ]


def workflow_items(env: Envelope) -> Items:
    """workflow.instance.approved|rejected|cancelled: completed, within SLA, and the cycle time in hours."""
    d = FINISHED[env.type].read(env.data)
    dims = {
        "definition": d.definition_key,
        "outcome": env.type.rsplit(".", 1)[-1],
        **_dims(d.context, CONTEXT_DIMENSIONS),
    }
    when = d.finished_at.isoformat()
    iid = d.instance_id

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
    hours = Decimal(str(d.cycle_time_business_hours)).quantize(Decimal("0.000001"))  # a number, not money
    items.append(item("approval_cycle_time_hours", str(hours), "cycle_time"))
    return items


def breach_items(env: Envelope) -> Items:
    """workflow.sla.breached: one `sla_breaches` measurement per task, at its due time."""
    d = workflow.SLA_BREACHED.read(env.data)
    dims = {"definition": d.definition_key, "stage": d.stage, **_dims(d.context, CONTEXT_DIMENSIONS)}
    return [
        {
            "type": "sla_breaches",
            "value": "1",
            "time": d.due_at.isoformat() if d.due_at is not None else env.time,
            "dimensions": dims,
            "source": "workflow",
            "external_id": f"{d.task_id}:breached",
        }
    ]


def saving_items(env: Envelope) -> Items:
    """registry.saving.recorded: one `stack_savings` measurement per saving (per year, in its currency;
    a withdrawn cancellation's is negative), from the day it starts."""
    d = registry.SAVING_RECORDED.read(env.data)
    return [
        {
            "type": "stack_savings",
            "value": str(d.annual_saving),
            "time": f"{d.effective_on.isoformat()}T00:00:00+00:00",
            "dimensions": {"currency": d.currency, "kind": d.kind},
            "source": "registry",
            "external_id": d.saving_id,
        }
    ]


def deliverable_items(env: Envelope) -> Items:
    """workflow.deliverable.approved: done, on time, rework rounds and lateness, per team or supplier,
    at the approval; so a supplier's (or a team's) on-time rate is a governed metric with targets."""
    d = workflow.DELIVERABLE_APPROVED.read(env.data)
    dims = {"sla_kind": d.sla_kind, "assignee": "supplier" if d.supplier_id else "team"}
    dims.update({k: v for k, v in (("supplier", d.supplier_id), ("team", d.team)) if v})
    late = Decimal(str(d.lateness_business_hours or 0)).quantize(Decimal("0.000001"))  # a number, not money

    def item(mtype: str, value: str) -> dict[str, Any]:
        return {
            "type": mtype,
            "value": value,
            "time": env.time,
            "dimensions": dims,
            "source": "workflow",
            "external_id": f"{d.deliverable_id}:{mtype}",
        }

    return [
        item("deliverables_done", "1"),
        item("deliverables_on_time", "1" if d.on_time else "0"),
        item("deliverable_rework_rounds", str(d.rework_rounds)),
        item("deliverable_lateness_hours", str(late)),
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
        budget.ACTUAL_POSTED.subject: handler(spend_items),
        **{subject: finished for subject in FINISHED},
        workflow.SLA_BREACHED.subject: handler(breach_items),
        registry.SAVING_RECORDED.subject: handler(saving_items),
        workflow.DELIVERABLE_APPROVED.subject: handler(deliverable_items),
    }
