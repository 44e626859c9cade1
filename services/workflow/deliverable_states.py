"""The state machine of a deliverable, pure (no database): which action takes which status where,
whose part it is, whether the SLA clock runs there and how a send-back counts a rework round.

    open --accept--> accepted --start--> in_progress --deliver--> delivered --approve--> done
    open --start--> in_progress                     delivered --send_back--> in_progress (rework + 1)
    open | accepted | in_progress | delivered --cancel--> cancelled

The assignee (the owner of a team's deliverable, a supplier's principals for a supplier's) accepts,
starts and delivers; the requester (or mops, admins in the request's scope) approves, sends back
and cancels. The clock runs while the work is the assignee's (open, accepted, in_progress) and
pauses while a delivery waits on the requester (delivered); done and cancelled stop it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Status = Literal["open", "accepted", "in_progress", "delivered", "done", "cancelled"]
Action = Literal["accept", "start", "deliver", "approve", "send_back", "cancel"]
Part = Literal["assignee", "requester"]

STATUSES: tuple[Status, ...] = ("open", "accepted", "in_progress", "delivered", "done", "cancelled")
ACTIONS: tuple[Action, ...] = ("accept", "start", "deliver", "approve", "send_back", "cancel")
RUNNING: frozenset[str] = frozenset({"open", "accepted", "in_progress"})  # the SLA clock runs
FINISHED: frozenset[str] = frozenset({"done", "cancelled"})

# action -> (the statuses it starts from, the status it leads to, whose part it is)
MOVES: dict[Action, tuple[frozenset[str], Status, Part]] = {
    "accept": (frozenset({"open"}), "accepted", "assignee"),
    "start": (frozenset({"open", "accepted"}), "in_progress", "assignee"),
    "deliver": (frozenset({"in_progress"}), "delivered", "assignee"),
    "approve": (frozenset({"delivered"}), "done", "requester"),
    "send_back": (frozenset({"delivered"}), "in_progress", "requester"),
    "cancel": (frozenset(RUNNING | {"delivered"}), "cancelled", "requester"),
}

# the event verb of each action (`workflow.deliverable.<verb>`)
VERBS: dict[Action, str] = {
    "accept": "accepted",
    "start": "started",
    "deliver": "delivered",
    "approve": "approved",
    "send_back": "sent_back",
    "cancel": "cancelled",
}


class IllegalMove(Exception):
    """The action does not apply to the deliverable's status (a 409 at the edge)."""


@dataclass(frozen=True, slots=True)
class State:
    status: Status = "open"
    rework_rounds: int = 0

    @property
    def clock_runs(self) -> bool:
        return self.status in RUNNING

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def part(action: Action) -> Part:
    return MOVES[action][2]


def step(state: State, action: Action) -> State:
    """The state after `action`, or IllegalMove; a send-back counts one rework round, nothing else does."""
    sources, target, _ = MOVES[action]
    if state.status not in sources:
        raise IllegalMove(f"A deliverable {state.status} cannot be {VERBS[action]}.")
    rounds = state.rework_rounds + (1 if action == "send_back" else 0)
    return replace(state, status=target, rework_rounds=rounds)
