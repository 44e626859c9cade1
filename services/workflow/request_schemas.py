"""Request and answer models of request types (intake forms) and requests.

Pydantic checks shapes; the form itself is checked against the JSON Schema meta-schema, and a
request's data against its type's form, by the domain (`intake`), which names every bad field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from services.workflow.deliverable_schemas import DeliverableOut
from services.workflow.events import InstanceStatus, Timestamp
from services.workflow.schemas import KEY, HistoryOut, InstanceOut, JsonObject, Name, Strict, TaskOut


class RequestTypeIn(Strict):
    key: str = Field(pattern=KEY)
    name: str = Name
    description: str | None = Field(default=None, max_length=2000)
    form: JsonObject = Field(
        description='The intake form: a JSON Schema (draft 2020-12) of an object, e.g. {"type": "object", ...}'
    )
    definition_key: str = Field(min_length=1, max_length=100, description="The definition a request starts")


class RequestTypeOut(BaseModel):
    id: str
    key: str
    version: int
    name: str
    description: str | None
    form: dict[str, Any]
    definition_key: str
    created_at: Timestamp
    created_by: str


class RequestTypePage(BaseModel):
    items: list[RequestTypeOut]
    next_cursor: str | None


class RequestIn(Strict):
    type_key: str = Field(min_length=1, max_length=100)
    title: str = Name
    data: JsonObject = Field(description="The form's fields; they are also the instance's context (e.g. region)")


class RequestSummary(BaseModel):
    id: str
    number: str = Field(description="REQ-<year>-<sequence>, unique")
    type_key: str
    type_version: int
    title: str
    data: dict[str, Any]
    requester: str
    instance_id: str
    status: InstanceStatus = Field(description="the status of the request's workflow instance")
    created_at: Timestamp


class RequestCommentIn(Strict):
    body: str = Field(min_length=1, max_length=5000, description="text; `@user` mentions that user")


class RequestCommentOut(BaseModel):
    id: str
    request_id: str
    deliverable_id: str | None = Field(description="set on a question about a deliverable")
    author: str
    body: str
    mentions: list[str]
    created_at: Timestamp


class AttachmentOut(BaseModel):
    id: str
    request_id: str
    deliverable_id: str | None = Field(description="set on a file an assignee delivered for a deliverable")
    filename: str
    content_type: str
    size: int = Field(description="bytes")
    sha256: str
    created_at: Timestamp
    created_by: str


class AttachmentPage(BaseModel):
    items: list[AttachmentOut]
    next_cursor: str | None


class RequestOut(RequestSummary):
    """The request's page of truth: its fields (`data`), its workflow, approvals, deliverables,
    comments and history in one answer."""

    instance: InstanceOut
    approvals: list[TaskOut] = Field(description="the approval tasks of its workflow, with who decided")
    deliverables: list[DeliverableOut]
    comments: list[RequestCommentOut]
    attachments: list[AttachmentOut]
    history: list[HistoryOut] = Field(description="everything that happened, oldest first")


class RequestPage(BaseModel):
    items: list[RequestSummary]
    next_cursor: str | None
