"""The state machine of a deliverable, pure (no database): which action takes which status where,
whose part it is, whether the SLA clock runs there and how a send-back counts a rework round.

    open --accept--> accepted --start--> in_progress --deliver--> delivered --review--> in_review
    open --start--> in_progress
    delivered | in_review --approve--> done
    delivered | in_review --send_back--> in_progress (rework + 1)
    open | accepted | in_progress | delivered | in_review --cancel--> cancelled

The assignee (the owner of a team's deliverable, a supplier's principals for a supplier's) accepts,
starts and delivers; the requester (or mops, admins in the request's scope) starts the review,
approves, sends back and cancels. `delivered` is a delivery waiting for the requester to look at
it; `in_review` says the requester has started reviewing it (`POST .../review`). Starting a review
is the requester's explicit act and may be skipped: approving or sending back straight from
`delivered` is a review begun and ended at once. The clock runs while the work is the assignee's
(open, accepted, in_progress) and pauses while it waits on the requester (delivered, in_review);
done and cancelled stop it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Status = Literal["open", "accepted", "in_progress", "delivered", "in_review", "done", "cancelled"]
Action = Literal["accept", "start", "deliver", "review", "approve", "send_back", "cancel"]
Part = Literal["assignee", "requester"]

STATUSES: tuple[Status, ...] = ("open", "accepted", "in_progress", "delivered", "in_review", "done", "cancelled")
ACTIONS: tuple[Action, ...] = ("accept", "start", "deliver", "review", "approve", "send_back", "cancel")
RUNNING: frozenset[str] = frozenset({"open", "accepted", "in_progress"})  # the SLA clock runs
WAITING: frozenset[str] = frozenset({"delivered", "in_review"})  # on the requester: the clock is paused
FINISHED: frozenset[str] = frozenset({"done", "cancelled"})

# action -> (the statuses it starts from, the status it leads to, whose part it is)
MOVES: dict[Action, tuple[frozenset[str], Status, Part]] = {
    "accept": (frozenset({"open"}), "accepted", "assignee"),
    "start": (frozenset({"open", "accepted"}), "in_progress", "assignee"),
    "deliver": (frozenset({"in_progress"}), "delivered", "assignee"),
    "review": (frozenset({"delivered"}), "in_review", "requester"),
    "approve": (WAITING, "done", "requester"),
    "send_back": (WAITING, "in_progress", "requester"),
    "cancel": (RUNNING | WAITING, "cancelled", "requester"),
}

# the event verb of each action (`workflow.deliverable.<verb>`)
VERBS: dict[Action, str] = {
    "accept": "accepted",
    "start": "started",
    "deliver": "delivered",
    "review": "review_started",
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
    def waiting(self) -> bool:
        return self.status in WAITING

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
