"""Domain errors: what went wrong in business terms, with no HTTP in sight.

The problem+json layer (shared.problems) maps each class to a status code, so
domain modules can raise these without importing FastAPI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldError:
    field: str
    message: str
    code: str = "invalid"

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message, "code": self.code}


class DomainError(Exception):
    """Base class; `title` is the short human summary, `detail` the actionable text."""

    title = "Request could not be processed"
    kind = "domain-error"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.extra = extra


class NotFound(DomainError):
    title = "Not found"
    kind = "not-found"


class Conflict(DomainError):
    """The request is well formed but clashes with the current state (409)."""

    title = "Conflict"
    kind = "conflict"


class Invalid(DomainError):
    """The request is well formed JSON but breaks a business rule on its fields (422)."""

    title = "Validation failed"
    kind = "validation-error"

    @classmethod
    def on(cls, field_name: str, message: str, code: str = "invalid") -> Invalid:
        return cls(f"{field_name}: {message}", errors=[FieldError(field_name, message, code)])


class Forbidden(DomainError):
    title = "Forbidden"
    kind = "forbidden"


class Unauthorized(DomainError):
    title = "Unauthorized"
    kind = "unauthorized"


class TooMuchWork(DomainError):
    """The request asks for more computation than one request may do (422): narrow it."""

    title = "Too much work for one request"
    kind = "too-much-work"


class Unavailable(DomainError):
    """Something the answer needs cannot be reached now (503): try again later."""

    title = "Service unavailable"
    kind = "unavailable"


class PreconditionFailed(DomainError):
    title = "Precondition failed"
    kind = "precondition-failed"


@dataclass
class Errors:
    """Collects every field error before raising, so a client learns all of them at once."""

    items: list[FieldError] = field(default_factory=list)

    def add(self, field_name: str, message: str, code: str = "invalid") -> None:
        self.items.append(FieldError(field_name, message, code))

    def raise_if_any(self, detail: str | None = None) -> None:
        if self.items:
            raise Invalid(detail or "; ".join(f"{e.field}: {e.message}" for e in self.items), errors=self.items)
