"""The instance state machine, driven without a database: who may take which transition, and what
each one changes."""

from __future__ import annotations

import datetime as dt

import pytest

from services.workflow import instances
from services.workflow.instances import Instance, Task
from shared.errors import Conflict, Forbidden, Invalid
from shared.identity import Principal

T0 = dt.datetime(2027, 3, 1, 9, tzinfo=dt.UTC)
MIA = Principal(subject="mia", roles=frozenset({"marketer"}), scopes=frozenset({"region:EMEA"}))
EMIL = Principal(subject="emil", roles=frozenset({"approver"}), scopes=frozenset({"region:EMEA"}))
NADIA = Principal(subject="nadia", roles=frozenset({"approver"}), scopes=frozenset({"region:NA"}))
GUS = Principal(subject="gus", roles=frozenset({"approver"}))
ADA = Principal(subject="ada", roles=frozenset({"admin"}))
MO_NA = Principal(subject="mo", roles=frozenset({"mops"}), scopes=frozenset({"region:NA"}))


def new(**changes: object) -> Instance:
    inst = instances.started(
        definition_id="d1",
        definition_key="budget-approval",
        definition_version=1,
        subject={"type": "commitment", "id": "c1", "service": "budget"},
        context={"amount": "25000.00", "region": "EMEA"},
        requester="mia",
        now=T0,
    )
    return Instance.from_row({**inst.row(), **changes})


def task(**changes: object) -> Task:
    row = {
        "id": "t1",
        "instance_id": "i1",
        "stage_index": 0,
        "stage": "Review",
        "status": "open",
        "mode": "any",
        "required": 1,
        "scope": {"region": "EMEA"},
        "calendar": "default",
        "sla_seconds": 3600,
        "warn_at": T0 + dt.timedelta(minutes=45),
        "due_at": T0 + dt.timedelta(hours=1),
        "warned": False,
        "breached": False,
        "escalated": False,
        "decision": None,
        "actor": None,
        "created_at": T0,
        "completed_at": None,
        "paused_remaining_seconds": None,
        "paused_warn_seconds": None,
    }
    return Task.from_row({**row, **changes})


def test_a_new_instance_runs_its_first_stage_at_version_1():
    inst = new()
    assert (inst.status, inst.current_stage, inst.version, inst.sla_met) == ("running", 0, 1, True)
    assert inst.subject == {"type": "commitment", "id": "c1", "service": "budget"}
    assert Instance.from_row(inst.row()) == inst


@pytest.mark.parametrize("status", ["approved", "rejected", "cancelled"])
def test_finishing_counts_both_cycle_times_once(status):
    later = T0 + dt.timedelta(hours=30)
    done = instances.finish(new(), status, later, dt.timedelta(hours=8))
    assert (done.status, done.finished_at, done.version) == (status, later, 2)
    assert (done.cycle_time_business_seconds, done.cycle_time_seconds) == (8 * 3600, 30 * 3600)
    assert done.finished
    with pytest.raises(Conflict):
        instances.finish(done, "cancelled", later, dt.timedelta(0))


def test_changes_pause_a_running_instance_only():
    paused = instances.pause(new())
    assert (paused.status, paused.version) == ("changes_requested", 2)
    with pytest.raises(Conflict):
        instances.pause(paused)


def test_only_the_requester_or_an_admin_resubmits_a_paused_instance():
    paused = instances.pause(new())
    with pytest.raises(Conflict, match="changes requested"):
        instances.rework(new(), MIA, None)
    with pytest.raises(Forbidden):
        instances.rework(paused, EMIL, None)
    back = instances.rework(paused, MIA, None)
    assert (back.status, back.version, back.context) == ("running", 3, paused.context)
    assert instances.rework(paused, ADA, None).status == "running"


def test_a_resubmitted_context_change_stays_within_the_requesters_scopes():
    paused = instances.pause(new())
    changed = instances.rework(paused, MIA, {"amount": "26000.00"})
    assert changed.context == {"amount": "26000.00", "region": "EMEA"}
    assert changed.version == paused.version + 2  # the context, then the status
    with pytest.raises(Forbidden, match="scopes"):
        instances.rework(paused, MIA, {"region": "NA"})


def test_cancel_is_for_the_requester_or_mops_and_admins_who_see_the_context():
    inst = new()
    instances.check_cancel(inst, MIA)
    instances.check_cancel(inst, ADA)
    with pytest.raises(Forbidden):
        instances.check_cancel(inst, EMIL)
    with pytest.raises(Forbidden, match="scopes"):
        instances.check_cancel(inst, MO_NA)
    with pytest.raises(Conflict):
        instances.check_cancel(instances.finish(inst, "approved", T0, dt.timedelta(0)), MIA)


def test_four_eyes_and_scopes_decide_who_may_decide():
    inst = new()
    with pytest.raises(Forbidden, match="Four eyes"):
        instances.check_decider(inst, MIA)
    with pytest.raises(Forbidden, match="scopes"):
        instances.check_decider(inst, NADIA)
    instances.check_decider(inst, EMIL)
    instances.check_decider(inst, GUS)
    with pytest.raises(Invalid) as err:
        instances.check_delegate(inst, EMIL, "mia")
    assert err.value.errors[0].field == "to_user"
    with pytest.raises(Invalid):
        instances.check_delegate(inst, EMIL, "emil")
    instances.check_delegate(inst, EMIL, "zed")


def test_only_an_open_task_of_an_unfinished_instance_can_be_acted_on():
    instances.check_open(new(), task())
    with pytest.raises(Conflict, match="task is approved"):
        instances.check_open(new(), task(status="approved"))
    with pytest.raises(Conflict, match="already rejected"):
        instances.check_open(instances.finish(new(), "rejected", T0, dt.timedelta(0)), task())


def test_auto_approved_stages_are_skipped_until_one_needs_a_person():
    small = {"field": "amount", "op": "lt", "value": "100000"}
    stages = [{"name": "A", "auto_approve": small}, {"name": "B", "auto_approve": None}, {"name": "C"}]
    assert instances.next_stage(stages, 0, {"amount": "5"}) == (1, ["A"])
    assert instances.next_stage(stages, 0, {"amount": "500000"}) == (0, [])
    assert instances.next_stage([{"name": "A", "auto_approve": small}], 0, {"amount": "5"}) == (1, ["A"])


def test_seats_modes_and_scope():
    assignees = {"users": ["cfo", "cfo"], "roles": ["finance", "approver"], "scope_from_context": ["region"]}
    seats = instances.seats_of(assignees)
    assert seats == [("user", "cfo"), ("role", "finance"), ("role", "approver")]
    assert instances.required_approvals({"mode": "any"}, 3) == 1
    assert instances.required_approvals({"mode": "all"}, 3) == 3
    assert instances.required_approvals({"mode": "quorum", "quorum": 2}, 3) == 2
    stage = {"assignees": assignees}
    assert instances.task_scope(stage, {"region": "EMEA"}) == {"region": "EMEA"}
    assert instances.task_scope(stage, {"region": ""}) == {}
    rows = [(0, "user", "cfo"), (1, "role", "finance"), (2, "role", "approver")]
    assert instances.my_seats(rows, task(), EMIL) == [2]
    assert instances.my_seats(rows, task(), NADIA) == []  # narrowed to another region
    assert instances.my_seats(rows, task(), GUS) == [2]  # an unnarrowed approver sees every region
    assert instances.my_seats(rows, task(), Principal(subject="cfo")) == [0]


def test_the_sla_state_of_a_task():
    due = T0 + dt.timedelta(hours=1)
    assert instances.sla_state(task(due_at=None), T0) is None
    assert instances.sla_state(task(), T0) == "on_track"
    assert instances.sla_state(task(), T0 + dt.timedelta(minutes=50)) == "at_risk"
    assert instances.sla_state(task(warned=True), T0) == "at_risk"
    assert instances.sla_state(task(), due) == "breached"
    assert instances.sla_state(task(status="approved"), due) == "met"
    assert instances.sla_state(task(status="approved", breached=True), T0) == "breached"
    assert instances.sla_state(task(status="changes_requested"), due) == "paused"
