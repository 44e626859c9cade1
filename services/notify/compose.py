"""What every message handler shares: the Composer (rules, links, fallback roles, sending to people)
and `read` (an event's data through notify's tolerant models, or a dead letter)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from services.notify import dispatch
from services.notify.dispatch import Message, Rules
from services.notify.models import Person
from shared.errors import Invalid
from shared.events import Envelope
from shared.uow import UnitOfWork

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Composer:
    rules: Rules
    public_url: str
    line_owner_roles: tuple[str, ...]
    metric_owner_roles: tuple[str, ...]
    tool_owner_roles: tuple[str, ...]
    # Who hears for a request notify never saw submitted (its requester unknown).
    request_owner_roles: tuple[str, ...] = ("mops",)

    def link(self, path: str) -> str:
        return f"{self.public_url.rstrip('/')}{path}"

    async def send(
        self, uow: UnitOfWork, to: Iterable[Person], m: Message, env: Envelope, key: str | None = None
    ) -> int:
        count = 0
        for p in {p.id: p for p in to}.values():
            count += len(await dispatch.notify(uow, self.rules, p, m, event_id=env.id, dedupe_key=key))
        return count


def read(model: type[M], env: Envelope) -> M:
    """The event's data as notify reads it; data that does not fit is dead-lettered at once (Invalid)."""
    try:
        return model.model_validate(env.data)
    except ValidationError as exc:
        errs = "; ".join(f"data.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise Invalid(f"{env.type} event data cannot be read: {errs}") from exc
