"""What the kpi service consumes (spend, workflow cycle times, SLA breaches) and publishes.

Publishes `kpi.target.at_risk` (see metrics.evaluate_targets), always through the outbox.
Every consumed event becomes measurements written by the same ingest path as
POST /v1/measurements, keyed by (source, external_id), so a redelivered event
is a duplicate, never a double count.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.kpi.ingest import Ingestor
from shared.app import Runtime
from shared.consumer import Handler
from shared.errors import Invalid
from shared.events import Envelope

# Context fields of a workflow instance that become dimensions (for scopes and grouping).
CONTEXT_DIMENSIONS = ("region", "channel", "campaign")


def _dims(values: dict[str, Any] | None, keys: tuple[str, ...] | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (values or {}).items():
        if (keys is None or k in keys) and v is not None and not isinstance(v, dict | list | bool):
            out[k] = str(v)
    return out


async def _write(ingestor: Ingestor, s: AsyncSession, env: Envelope, items: list[dict[str, Any]]) -> None:
    rows, rejected = ingestor.validate(items, None, default_source=env.source)
    if rejected:
        reasons = "; ".join(f"item {r['index']}: {r['reason']}" for r in rejected)
        raise Invalid(f"{env.type} {env.id} cannot become measurements: {reasons}")
    await ingestor.write(s, rows, [])


def spend_items(env: Envelope) -> list[dict[str, Any]]:
    d = env.data
    dims = _dims(d.get("dimensions"))
    if d.get("line_code"):
        dims["line_code"] = str(d["line_code"])
    if d.get("currency"):
        dims["currency"] = str(d["currency"])
    return [
        {
            "type": "spend",
            "value": d.get("amount"),
            "time": d.get("date") or env.time,
            "dimensions": dims,
            "source": "budget",
            "external_id": str(d.get("entry_id") or env.subject_id),
        }
    ]


def workflow_items(env: Envelope) -> list[dict[str, Any]]:
    d = env.data
    outcome = env.type.rsplit(".", 1)[-1]
    dims = {
        "definition": str(d.get("definition_key") or "unknown"),
        "outcome": outcome,
        **_dims(d.get("context"), CONTEXT_DIMENSIONS),
    }
    when = d.get("finished_at") or env.time
    iid = str(d.get("instance_id") or env.subject_id)
    items = [
        {
            "type": "workflows_completed",
            "value": "1",
            "time": when,
            "dimensions": dims,
            "source": "workflow",
            "external_id": f"{iid}:completed",
        },
        {
            "type": "workflows_sla_met",
            "value": "1" if d.get("sla_met") else "0",
            "time": when,
            "dimensions": dims,
            "source": "workflow",
            "external_id": f"{iid}:sla_met",
        },
    ]
    hours = d.get("cycle_time_business_hours")
    if hours is not None:
        value = str(Decimal(str(hours)).quantize(Decimal("0.000001")))
        items.append(
            {
                "type": "approval_cycle_time_hours",
                "value": value,
                "time": when,
                "dimensions": dims,
                "source": "workflow",
                "external_id": f"{iid}:cycle_time",
            }
        )
    return items


def breach_items(env: Envelope) -> list[dict[str, Any]]:
    d = env.data
    dims = {
        "definition": str(d.get("definition_key") or "unknown"),
        "stage": str(d.get("stage") or "unknown"),
        **_dims(d.get("context"), CONTEXT_DIMENSIONS),
    }
    return [
        {
            "type": "sla_breaches",
            "value": "1",
            "time": d.get("due_at") or env.time,
            "dimensions": dims,
            "source": "workflow",
            "external_id": f"{d.get('task_id') or env.subject_id}:breached",
        }
    ]


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """Subject -> handler for the events this service consumes."""
    ingestor: Ingestor = runtime.extras["ingestor"]

    def handler(make: Any) -> Handler:
        async def handle(s: AsyncSession, env: Envelope) -> None:
            await _write(ingestor, s, env, make(env))

        return handle

    finished = handler(workflow_items)
    return {
        "budget.actual.posted": handler(spend_items),
        "workflow.instance.approved": finished,
        "workflow.instance.rejected": finished,
        "workflow.instance.cancelled": finished,
        "workflow.sla.breached": handler(breach_items),
    }
