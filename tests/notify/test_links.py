"""Links in messages, without signing in: approve/reject pages and unsubscribe.

(Deciding for real, through the workflow service, runs in tests/e2e/test_notify.py.)"""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from sqlalchemy import update

from pitcrew.launcher import free_port
from services.notify.models import ActionLink
from tests.conftest import eventually
from tests.notify.conftest import add_person, client, domain
from tests.notify.test_email import instance_started, task_assigned

pytestmark = pytest.mark.db


async def _mailed_links(app, api, bus, smtp) -> tuple[str, str, str]:
    await add_person(api, "ann", roles=["approver"], scopes=["region:EMEA"])
    inst, task = str(uuid.uuid4()), str(uuid.uuid4())
    await bus.publish("workflow.instance.started", instance_started(inst), inst)
    await bus.publish("workflow.task.assigned", task_assigned(task, inst), task)
    await eventually(lambda: len(smtp.sink.messages) >= 1, timeout=15)
    text = smtp.sink.parsed()[0].get_body(("plain",)).get_content()
    approve = re.search(r"Approve: (\S+)", text).group(1)
    unsubscribe = re.search(r"Stop these messages: (\S+)", text).group(1)
    return approve, unsubscribe, task


def local(url: str) -> str:
    return url.removeprefix("http://gateway.test/notify")


@pytest.mark.parametrize("overrides", [{"workflow_url": f"http://127.0.0.1:{free_port()}"}])
async def test_opening_a_link_decides_nothing_and_a_claim_is_released_when_workflow_is_down(
    app, api, bus, smtp, overrides
):
    approve, _, _ = await _mailed_links(app, api, bus, smtp)
    async with client(app, headers={}) as anyone:  # no identity at all
        page = await anyone.get(local(approve))
        assert page.status_code == 200 and "Approve now" in page.text and "Trade fair" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert (await anyone.get(local(approve)[:-2] + "xx")).status_code == 404
        down = await anyone.post(local(approve))
        assert down.status_code == 503 and "Nothing was decided" in down.text
        # The link still works (nothing was decided), until it expires.
        assert (await anyone.get(local(approve))).status_code == 200
        rt = app.state.runtime
        async with rt.unit_of_work() as uow:
            await uow.execute(update(ActionLink).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
        assert (await anyone.get(local(approve))).status_code == 410
        assert (await anyone.post(local(approve))).status_code == 410
    assert domain(app).settings.workflow_url == overrides["workflow_url"]


async def test_unsubscribe_works_without_signing_in_and_only_by_post(app, api, bus, smtp):
    _, unsubscribe, _ = await _mailed_links(app, api, bus, smtp)
    async with client(app, headers={}) as anyone:
        page = await anyone.get(local(unsubscribe))
        assert page.status_code == 200 and "task_assigned" in page.text
        assert (await api.get("/v1/people/ann/preferences")).json()["items"] == []  # GET changed nothing
        done = await anyone.post(local(unsubscribe))
        assert done.status_code == 200 and "Unsubscribed" in done.text
        assert (await anyone.post(local(unsubscribe)[:-2] + "zz")).status_code == 404
    prefs = (await api.get("/v1/people/ann/preferences")).json()["items"]
    assert prefs == [{"kind": "task_assigned", "channels": ["email", "in_app"], "mode": "immediate", "enabled": False}]
    inst, task = str(uuid.uuid4()), str(uuid.uuid4())
    await bus.publish("workflow.instance.started", instance_started(inst), inst)
    await bus.publish("workflow.task.assigned", task_assigned(task, inst), task)
    breach = {
        "task_id": task,
        "instance_id": inst,
        "stage": "s",
        "due_at": None,
        "escalation": {},
        "context": {},
        "subject": {},
    }
    await bus.publish("workflow.sla.breached", breach, task)  # required: still sent
    await eventually(lambda: len(smtp.sink.messages) >= 2, timeout=15)
    assert [m["Subject"].split(":")[0] for m in smtp.sink.parsed()] == ["Your decision is needed", "SLA breached"]
