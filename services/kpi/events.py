"""The KPI service's event contract: what it publishes (`kpi.target.at_risk`, `kpi.anomaly.detected`),
the models of their `data`, and what it consumes (spend from budget, cycle times and SLA breaches from
workflow, savings from the registry).

Other services import this module to read KPI events, so it imports only pydantic, shared and
the contracts of the services whose events it consumes.
Model names carry the service's name: the gateway merges every service's schemas into one
AsyncAPI document. Every consumed event becomes measurements through the same ingest path as
POST /v1/measurements (see handlers.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.budget import events as budget
from services.registry import events as registry
from services.workflow import events as workflow
from shared.contracts import Catalogue, Consumed, EventData, EventSpec

Direction = Literal["higher_is_better", "lower_is_better"]


class KpiTargetAtRisk(EventData):
    """A target whose linear projection misses it (published once per target)."""

    target_id: str
    metric: str = Field(description="the metric's key")
    period: str = Field(description="2027, 2027-Q1 or 2027-03")
    filter: dict[str, str] = Field(description="the dimension values the target is set for ({} for all)")
    actual: str | None = Field(description="the value so far, a decimal string (null when undefined)")
    target: str | None = Field(description="the target value, a decimal string")
    projected: str | None = Field(description="the value at the end of the period at the current pace")
    direction: Direction
    elapsed: float = Field(ge=0, le=1, description="the fraction of the period elapsed (4 decimals)")


TARGET_AT_RISK = EventSpec(
    "kpi.target.at_risk", KpiTargetAtRisk, "A target's linear projection misses it: act before the period ends"
)


class KpiAnomalyDetected(EventData):
    """A metric's day outside the range its same weekdays predict (published once per metric, group and day)."""

    anomaly_id: str
    metric: str = Field(description="the metric's key")
    group: dict[str, str] = Field(description="the dimension values of the group checked ({} for all)")
    day: str = Field(description="the UTC day checked, YYYY-MM-DD")
    observed: str = Field(description="the day's value, a decimal string")
    expected: str = Field(description="the median of the same weekday over the baseline weeks")
    low: str = Field(description="the expected range's lower end")
    high: str = Field(description="the expected range's upper end")
    direction: Literal["above", "below"]
    baseline_days: int = Field(ge=1, description="same-weekday values the baseline was computed from")
    owner: str | None = Field(None, description="the metric's owner (its definition's), who hears about it")


ANOMALY_DETECTED = EventSpec(
    "kpi.anomaly.detected",
    KpiAnomalyDetected,
    "A metric's day fell outside its seasonal (same-weekday) robust range: look before it becomes a trend",
)

ACTUAL_POSTED = Consumed(
    budget.ACTUAL_POSTED.subject,
    "Actual spend (and its reversals, negative) becomes a `spend` measurement, by entry id",
)
INSTANCE_APPROVED = Consumed(
    workflow.INSTANCE_APPROVED.subject, "A finished workflow: completed, within SLA and cycle-time measurements"
)
INSTANCE_REJECTED = Consumed(
    workflow.INSTANCE_REJECTED.subject, "A finished workflow: completed, within SLA and cycle-time measurements"
)
INSTANCE_CANCELLED = Consumed(
    workflow.INSTANCE_CANCELLED.subject, "A finished workflow: completed, within SLA and cycle-time measurements"
)
SLA_BREACHED = Consumed(workflow.SLA_BREACHED.subject, "A task past its SLA becomes an `sla_breaches` measurement")
SAVING_RECORDED = Consumed(
    registry.SAVING_RECORDED.subject, "What a cancellation or a cheaper renewal saves per year: `stack_savings`"
)

DELIVERABLE_APPROVED = Consumed(
    workflow.DELIVERABLE_APPROVED.subject,
    "A deliverable done: `deliverables_done`, `deliverables_on_time`, rework rounds and lateness, per team or supplier",
)

CATALOGUE = Catalogue(
    "kpi",
    publishes=(TARGET_AT_RISK, ANOMALY_DETECTED),
    consumes=(
        ACTUAL_POSTED,
        INSTANCE_APPROVED,
        INSTANCE_REJECTED,
        INSTANCE_CANCELLED,
        SLA_BREACHED,
        SAVING_RECORDED,
        DELIVERABLE_APPROVED,
    ),
    title="KPI",
)
