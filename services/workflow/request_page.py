"""A request's page of truth: its fields, its workflow (approvals and history), its deliverables
and its comments, read in one unit of work for whoever may see the request."""

from __future__ import annotations

from services.workflow import attachments, comments, deliverables, queries, work_requests
from services.workflow.container import Workflow
from services.workflow.request_schemas import RequestOut
from shared.identity import Principal
from shared.uow import UnitOfWork


async def view(uow: UnitOfWork, who: Principal, *, ref: str, wf: Workflow) -> RequestOut:
    """A request by id or by number (REQ-...), if the caller may see it (404 otherwise)."""
    row = await work_requests.visible_row(uow, who, ref=ref)
    instance = await queries.instance_view(uow, row["instance_id"], wf=wf)
    return RequestOut(
        **work_requests.summary(row).model_dump(),
        instance=instance,
        approvals=instance.tasks,
        deliverables=(await deliverables.list_for(uow, who, ref=row["id"], wf=wf)).items,
        comments=await comments.of_request(uow, row["id"]),
        attachments=await attachments.of_request(uow, row["id"]),
        history=instance.history,
    )
