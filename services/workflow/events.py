"""The workflow's event contract: every subject it publishes, the model of each event's `data`,
and what it consumes (budget's commitment requests and campaigns, registry's renewals due).

Consumers (KPI's SLA attainment, budget's decisions, a notifier) import this module to read
workflow events, so it imports only pydantic and shared. Model names carry the service's name:
the gateway merges every service's schemas into one AsyncAPI document. (Budget's and registry's
events modules, which name the subjects it consumes, import only pydantic and shared as well.) The payloads are those
the service has always published: an instance event carries its cycle times only once the
instance has finished, so the finished outcomes have a model of their own.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import Field, PlainSerializer, WithJsonSchema

from services.budget.events import CAMPAIGN_CREATED as BUDGET_CAMPAIGN_CREATED
from services.budget.events import COMMITMENT_REQUESTED as BUDGET_COMMITMENT_REQUESTED
from services.budget.events import REQUEST_SUBMITTED as BUDGET_REQUEST_SUBMITTED
from services.registry.events import RENEWAL_DUE as REGISTRY_RENEWAL_DUE
from shared.contracts import Catalogue, Consumed, EventData, EventSpec

InstanceStatus = Literal["running", "changes_requested", "approved", "rejected", "cancelled"]
FinalStatus = Literal["approved", "rejected", "cancelled"]


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


# An instant as the workflow has always written it: ISO 8601 with its offset (`+00:00`, not `Z`).
Timestamp = Annotated[
    dt.datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


class WorkflowSubject(EventData):
    """What an instance decides on, in the service that owns it (e.g. a budget commitment)."""

    type: str
    id: str
    service: str


class WorkflowInstance(EventData):
    instance_id: str
    definition_key: str
    definition_version: int
    subject: WorkflowSubject
    context: dict[str, Any] = Field(description="the request's facts (amount, region, ...) the conditions read")
    requester: str
    status: InstanceStatus


class WorkflowInstanceFinished(WorkflowInstance):
    status: FinalStatus
    finished_at: Timestamp
    cycle_time_business_hours: float = Field(description="business hours on the definition's calendar")
    cycle_time_hours: float = Field(description="wall-clock hours")
    sla_met: bool = Field(description="no stage breached its SLA")
    decided_by: str | None = Field(
        default=None, description="who gave the last approval, rejected or cancelled it (null: an automatic end)"
    )
    comment: str | None = Field(default=None, description="the comment given with that decision")


class WorkflowAssignees(EventData):
    roles: list[str]
    users: list[str]


class WorkflowTask(EventData):
    task_id: str
    instance_id: str
    definition_key: str
    stage: str
    stage_index: int
    assignees: WorkflowAssignees = Field(description="who may decide now (active seats)")
    scope: dict[str, str] = Field(description="the context's values narrowing role holders, e.g. region")
    due_at: Timestamp | None
    decision: str | None = Field(description="approved | rejected | changes_requested once completed")
    actor: str | None


class WorkflowSla(EventData):
    task_id: str
    instance_id: str
    definition_key: str
    stage: str
    due_at: Timestamp | None
    escalation: dict[str, Any] = Field(
        description="the stage's escalation: reassign_to_role, add_approver, notify (a list of recipients)"
    )
    context: dict[str, Any]
    subject: WorkflowSubject


class WorkflowRequest(EventData):
    request_id: str
    number: str = Field(description="the human number, e.g. REQ-2027-000123")
    type_key: str
    type_version: int
    title: str
    data: dict[str, Any] = Field(description="the intake form's fields, as validated")
    requester: str
    instance_id: str = Field(description="the instance of the type's definition the request started")
    definition_key: str
    submitted_at: Timestamp


class WorkflowRequestComment(EventData):
    request_id: str
    number: str
    comment_id: str
    deliverable_id: str | None = Field(description="set on an assignee's question about a deliverable")
    author: str
    body: str
    mentions: list[str] = Field(description="the users the comment mentions (@user), to notify")
    created_at: Timestamp


class WorkflowDeliverableRef(EventData):
    """Which deliverable, of which request, assigned to whom under which kind of SLA."""

    deliverable_id: str
    request_id: str
    request_number: str
    name: str
    team: str | None = Field(description="the internal team it is assigned to (an OLA), else null")
    owner: str | None = Field(description="the user who acts for the team")
    supplier_id: str | None = Field(description="the supplier it is assigned to (an underpinning contract), else null")
    sla_kind: Literal["ola", "underpinning_contract"]
    due_at: Timestamp


class WorkflowDeliverable(WorkflowDeliverableRef):
    status: Literal["open", "accepted", "in_progress", "delivered", "in_review", "done", "cancelled"]
    rework_rounds: int = Field(description="how many times the requester sent a delivery back")
    actor: str
    reason: str | None = Field(description="why a delivery was sent back (or cancelled)")
    link: str | None = Field(description="where the delivered work is")
    attachment_id: str | None = Field(default=None, description="the file delivered, if one was")
    on_time: bool | None = Field(
        default=None, description="on approval: the last delivery came by the due time and the SLA never breached"
    )
    lateness_business_hours: float | None = Field(
        default=None, description="on approval: business hours from the due time to the last delivery (0 on time)"
    )


class WorkflowDeliverableSla(WorkflowDeliverableRef):
    escalation: dict[str, Any] = Field(description="on breach: notify (a list of recipients)")


INSTANCE_STARTED = EventSpec("workflow.instance.started", WorkflowInstance, "An approval workflow started")
INSTANCE_CHANGES_REQUESTED = EventSpec(
    "workflow.instance.changes_requested", WorkflowInstance, "An assignee asked the requester to rework the request"
)
INSTANCE_RESUBMITTED = EventSpec(
    "workflow.instance.resubmitted",
    WorkflowInstance,
    "The requester reworked the request: the stage that asked reopens",
)
INSTANCE_APPROVED = EventSpec(
    "workflow.instance.approved", WorkflowInstanceFinished, "Every stage approved: the subject may proceed"
)
INSTANCE_REJECTED = EventSpec(
    "workflow.instance.rejected", WorkflowInstanceFinished, "An assignee rejected the request"
)
INSTANCE_CANCELLED = EventSpec(
    "workflow.instance.cancelled", WorkflowInstanceFinished, "The requester, mops or an admin withdrew the request"
)
TASK_ASSIGNED = EventSpec(
    "workflow.task.assigned", WorkflowTask, "A stage's task opened, was delegated or was reassigned by an escalation"
)
TASK_COMPLETED = EventSpec("workflow.task.completed", WorkflowTask, "A task was decided (approved, rejected, paused)")
SLA_WARNING = EventSpec("workflow.sla.warning", WorkflowSla, "A task reached its SLA's warning point")
SLA_BREACHED = EventSpec("workflow.sla.breached", WorkflowSla, "A task missed its SLA: the escalation applied")
REQUEST_SUBMITTED = EventSpec(
    "workflow.request.submitted", WorkflowRequest, "A request passed its type's intake form and started its workflow"
)
REQUEST_COMMENTED = EventSpec(
    "workflow.request.commented",
    WorkflowRequestComment,
    "Someone commented on a request (or an assignee asked about a deliverable), mentioning users",
)

DELIVERABLE_CREATED = EventSpec(
    "workflow.deliverable.created", WorkflowDeliverable, "A request promised a deliverable to a team or a supplier"
)
DELIVERABLE_ACCEPTED = EventSpec(
    "workflow.deliverable.accepted", WorkflowDeliverable, "The assignee accepted the deliverable"
)
DELIVERABLE_STARTED = EventSpec("workflow.deliverable.started", WorkflowDeliverable, "The assignee started work")
DELIVERABLE_DELIVERED = EventSpec(
    "workflow.deliverable.delivered", WorkflowDeliverable, "The assignee delivered: the SLA pauses for review"
)
DELIVERABLE_REVIEW_STARTED = EventSpec(
    "workflow.deliverable.review_started",
    WorkflowDeliverable,
    "The requester started reviewing the delivery (delivered -> in_review): the SLA stays paused",
)
DELIVERABLE_APPROVED = EventSpec(
    "workflow.deliverable.approved",
    WorkflowDeliverable,
    "The requester approved the delivery (delivered or in_review): done",
)
DELIVERABLE_SENT_BACK = EventSpec(
    "workflow.deliverable.sent_back",
    WorkflowDeliverable,
    "The requester sent the delivery back with a reason: a rework round, the SLA runs again",
)
DELIVERABLE_CANCELLED = EventSpec(
    "workflow.deliverable.cancelled", WorkflowDeliverable, "The requester cancelled the deliverable"
)
DELIVERABLE_SLA_WARNING = EventSpec(
    "workflow.deliverable.sla_warning", WorkflowDeliverableSla, "A deliverable reached its SLA's warning point"
)
DELIVERABLE_SLA_BREACHED = EventSpec(
    "workflow.deliverable.sla_breached",
    WorkflowDeliverableSla,
    "A deliverable missed its due time (business time): escalated to the notify list",
)
DELIVERABLE_EVENTS: tuple[EventSpec[Any], ...] = (
    DELIVERABLE_CREATED,
    DELIVERABLE_ACCEPTED,
    DELIVERABLE_STARTED,
    DELIVERABLE_DELIVERED,
    DELIVERABLE_REVIEW_STARTED,
    DELIVERABLE_APPROVED,
    DELIVERABLE_SENT_BACK,
    DELIVERABLE_CANCELLED,
    DELIVERABLE_SLA_WARNING,
    DELIVERABLE_SLA_BREACHED,
)

# The instance event of each status an instance moves to.
INSTANCE_EVENTS: dict[str, EventSpec[Any]] = {
    "started": INSTANCE_STARTED,
    "changes_requested": INSTANCE_CHANGES_REQUESTED,
    "resubmitted": INSTANCE_RESUBMITTED,
    "approved": INSTANCE_APPROVED,
    "rejected": INSTANCE_REJECTED,
    "cancelled": INSTANCE_CANCELLED,
}

ON_COMMITMENT_REQUESTED = Consumed(
    BUDGET_COMMITMENT_REQUESTED.subject, "Starts the matching approval definition (shipped: budget-approval)"
)
ON_BUDGET_REQUEST = Consumed(
    BUDGET_REQUEST_SUBMITTED.subject,
    "Starts the matching approval of a bottom-up budget request (shipped: budget-request)",
)
ON_RENEWAL_DUE = Consumed(REGISTRY_RENEWAL_DUE.subject, "Starts the matching renewal review (shipped: tool-renewal)")
ON_CAMPAIGN_CREATED = Consumed(
    BUDGET_CAMPAIGN_CREATED.subject, "Remembers the campaign's dates, status and plan for GET /v1/calendar"
)

CATALOGUE = Catalogue(
    "workflow",
    publishes=(
        INSTANCE_STARTED,
        INSTANCE_CHANGES_REQUESTED,
        INSTANCE_RESUBMITTED,
        INSTANCE_APPROVED,
        INSTANCE_REJECTED,
        INSTANCE_CANCELLED,
        TASK_ASSIGNED,
        TASK_COMPLETED,
        SLA_WARNING,
        SLA_BREACHED,
        REQUEST_SUBMITTED,
        REQUEST_COMMENTED,
        *DELIVERABLE_EVENTS,
    ),
    consumes=(ON_COMMITMENT_REQUESTED, ON_BUDGET_REQUEST, ON_RENEWAL_DUE, ON_CAMPAIGN_CREATED),
    title="Workflow",
)
