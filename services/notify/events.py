"""The notify service's event contract: it publishes nothing and reads what people must hear about
(and, for partner subscriptions, every event of every stream).

Each model below names only the fields notify needs and ignores the rest (`EventData`), so the
publishers may add fields (or move to typed catalogues of their own) without breaking it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.contracts import Catalogue, Consumed, EventData

TASK_ASSIGNED = "workflow.task.assigned"
SLA_WARNING = "workflow.sla.warning"
SLA_BREACHED = "workflow.sla.breached"
INSTANCE_FINISHED = ("workflow.instance.approved", "workflow.instance.rejected", "workflow.instance.cancelled")
THRESHOLD_CROSSED = "budget.line.threshold_crossed"
COMMITMENT_DECIDED = ("budget.commitment.committed", "budget.commitment.released", "budget.commitment.refused")
RENEWAL_DUE = "registry.renewal.due"
RENEWAL_MILESTONE = "registry.renewal.milestone"
TARGET_AT_RISK = "kpi.target.at_risk"
ANOMALY_DETECTED = "kpi.anomaly.detected"
REQUEST_SUBMITTED = "workflow.request.submitted"
REQUEST_COMMENTED = "workflow.request.commented"
DELIVERABLE_CREATED = "workflow.deliverable.created"
DELIVERABLE_DELIVERED = "workflow.deliverable.delivered"
DELIVERABLE_SENT_BACK = "workflow.deliverable.sent_back"
DELIVERABLE_ACCEPTED = "workflow.deliverable.accepted"
DELIVERABLE_STARTED = "workflow.deliverable.started"
DELIVERABLE_APPROVED = "workflow.deliverable.approved"
DELIVERABLE_CANCELLED = "workflow.deliverable.cancelled"
DELIVERABLE_SLA_WARNING = "workflow.deliverable.sla_warning"
DELIVERABLE_SLA_BREACHED = "workflow.deliverable.sla_breached"
LINE_OVERSPENT = "budget.line.overspent"
INTEGRATION_BROKEN = "registry.integration.broken"

# Partner subscriptions may name any event of these streams.
STREAM_PATTERNS = ("budget.>", "workflow.>", "kpi.>", "registry.>")


class Assignees(EventData):
    roles: list[str] = []
    users: list[str] = []


class SubjectRef(EventData):
    type: str | None = None
    id: str | None = None
    service: str | None = None


class TaskAssigned(EventData):
    task_id: str
    instance_id: str
    definition_key: str | None = None
    stage: str | None = None
    assignees: Assignees = Assignees()
    scope: dict[str, Any] = {}
    due_at: str | None = None


class Escalation(EventData):
    reassign_to_role: str | None = None
    add_approver: str | None = None
    notify: list[str] = []


class SlaEvent(EventData):
    task_id: str
    instance_id: str
    definition_key: str | None = None
    stage: str | None = None
    due_at: str | None = None
    escalation: Escalation = Escalation()
    context: dict[str, Any] = {}
    subject: SubjectRef = SubjectRef()
    assignees: Assignees | None = None  # when the publisher includes them; else the last assignment's


class InstanceFinished(EventData):
    instance_id: str
    definition_key: str | None = None
    requester: str | None = None
    status: str | None = None
    subject: SubjectRef = SubjectRef()
    context: dict[str, Any] = {}
    sla_met: bool | None = None


class ThresholdCrossed(EventData):
    line_id: str
    line_code: str | None = None
    period: str | None = None
    threshold: int | None = None
    allocated: str | None = None
    consumed: str | None = None
    currency: str | None = None
    owner: str | None = None


class CommitmentDecided(EventData):
    commitment_id: str | None = None  # a refusal has none: it has a refusal_id
    refusal_id: str | None = None
    line_code: str | None = None
    period: str | None = None
    amount: str | None = None
    currency: str | None = None
    memo: str | None = None
    requested_by: str | None = None
    status: str | None = None
    reason: str | None = None


class Owner(EventData):
    team: str | None = None
    person: str | None = None


class RenewalDue(EventData):
    contract_id: str
    tool_id: str | None = None
    tool_name: str | None = None
    term: int | None = None
    end: str | None = None
    notice_deadline: str | None = None
    annual_cost: str | None = None
    currency: str | None = None
    auto_renew: bool | None = None
    owner: Owner = Owner()
    milestone: str | None = Field(default=None, description="e.g. 120, 90, 60 days, when the registry sends them")
    days_before: int | None = None


class TargetAtRisk(EventData):
    target_id: str
    metric: str | None = None
    period: str | None = None
    actual: str | None = None
    target: str | None = None
    projected: str | None = None
    owner: str | None = None


class AnomalyDetected(EventData):
    anomaly_id: str
    metric: str | None = None
    group: dict[str, str] = {}
    day: str | None = None
    observed: str | None = None
    expected: str | None = None
    low: str | None = None
    high: str | None = None
    direction: str | None = None
    owner: str | None = None


class RequestSubmitted(EventData):
    request_id: str
    number: str | None = None
    title: str | None = None
    requester: str | None = None


class RequestCommented(EventData):
    request_id: str
    number: str | None = None
    comment_id: str | None = None
    deliverable_id: str | None = None
    author: str | None = None
    body: str = ""
    mentions: list[str] = []


class Deliverable(EventData):
    """A deliverable event (workflow.deliverable.*): lifecycle events carry status, actor, reason and
    link; SLA events carry the escalation. The assignee is a team (its `owner` acts for it) or a supplier."""

    deliverable_id: str
    request_id: str
    request_number: str | None = None
    name: str | None = None
    team: str | None = None
    owner: str | None = None
    supplier_id: str | None = None
    sla_kind: str | None = None
    due_at: str | None = None
    status: str | None = None
    rework_rounds: int | None = None
    actor: str | None = None
    reason: str | None = None
    link: str | None = None
    on_time: bool | None = None
    lateness_business_hours: float | None = None
    escalation: Escalation = Escalation()


class LineOverspent(EventData):
    line_id: str
    line_code: str | None = None
    period: str | None = None
    amount: str | None = None
    available: str | None = None
    overspent_by: str | None = None
    currency: str | None = None
    vendor: str | None = None
    external_ref: str | None = None
    owner: str | None = None


class IntegrationBroken(EventData):
    integration_id: str
    from_tool_name: str | None = None
    to_tool_name: str | None = None
    data_objects: list[str] = []
    method: str | None = None
    owner: str | None = None
    previous_status: str | None = None
    last_seen_working_at: str | None = None
    detail: str | None = None
    reported_by: str | None = None


def _consumed(subject: str, summary: str) -> Consumed:
    return Consumed(subject, summary)


CATALOGUE = Catalogue(
    "notify",
    publishes=(),
    consumes=(
        _consumed(TASK_ASSIGNED, "Tell the assignees (people named, and those holding the roles in scope)"),
        _consumed(SLA_WARNING, "Tell the assignees; repeated warnings for one task fold into one message"),
        _consumed(SLA_BREACHED, "Tell the assignees and the escalation's recipients"),
        *(_consumed(s, "Tell the requester how their request ended") for s in INSTANCE_FINISHED),
        _consumed(THRESHOLD_CROSSED, "Tell the line's owner"),
        *(_consumed(s, "Tell whoever asked for the commitment") for s in COMMITMENT_DECIDED),
        _consumed(RENEWAL_DUE, "Tell the tool's owner"),
        _consumed(RENEWAL_MILESTONE, "Tell the tool's owner at each renewal milestone"),
        _consumed(TARGET_AT_RISK, "Tell the metric's owner"),
        _consumed(ANOMALY_DETECTED, "Tell the metric's owner what was seen and what was expected"),
        _consumed(REQUEST_SUBMITTED, "Remember the request's number, title and requester (for later messages)"),
        _consumed(REQUEST_COMMENTED, "Tell each person the comment mentions (not its author)"),
        _consumed(DELIVERABLE_CREATED, "Tell the assignee: the team's owner and members, or the supplier's people"),
        _consumed(DELIVERABLE_DELIVERED, "Tell the request's requester there is a delivery to review"),
        _consumed(DELIVERABLE_SENT_BACK, "Tell the assignee why the delivery was sent back"),
        _consumed(DELIVERABLE_ACCEPTED, "Tell the request's requester the assignee took the work on"),
        _consumed(DELIVERABLE_STARTED, "Tell the request's requester the assignee started"),
        _consumed(DELIVERABLE_APPROVED, "Tell the assignee the delivery was approved (and whether on time)"),
        _consumed(DELIVERABLE_CANCELLED, "Tell the requester and the assignee the deliverable was cancelled"),
        _consumed(DELIVERABLE_SLA_WARNING, "Tell the assignee; repeated warnings for one deliverable fold into one"),
        _consumed(DELIVERABLE_SLA_BREACHED, "Tell the assignee and the escalation's recipients"),
        _consumed(LINE_OVERSPENT, "Tell the line's owner how far over it is"),
        _consumed(INTEGRATION_BROKEN, "Tell the integration's owner"),
        *(_consumed(p, "Forward to the partner subscriptions whose event types match") for p in STREAM_PATTERNS),
    ),
    title="Notify",
)
