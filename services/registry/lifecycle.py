"""A tool's lifecycle: which moves are allowed (creation may start anywhere: an existing stack is
catalogued as it is). Pure rules, no database."""

from __future__ import annotations

from shared.errors import Conflict

TRANSITIONS: dict[str, frozenset[str]] = {
    "evaluating": frozenset({"pilot", "active", "retired"}),
    "pilot": frozenset({"evaluating", "active", "retired"}),
    "active": frozenset({"sunsetting"}),
    "sunsetting": frozenset({"active", "retired"}),
    "retired": frozenset(),
}


def check_move(current: str, target: str) -> None:
    """A 409 listing the allowed targets when `current` may not move to `target`."""
    allowed = TRANSITIONS[current]
    if target not in allowed:
        options = ", ".join(sorted(allowed)) or "none: retired is final"
        raise Conflict(
            f"A tool cannot move from {current} to {target}; from {current} it may move to: {options}.",
            errors=[],
            current=current,
            allowed=sorted(allowed),
        )
