"""Event contracts: each subject, its payload model and its version, in one place per service.

A service's `events.py` declares what it publishes as `EventSpec`s (subject constant, a
pydantic model of `data`, a summary) and lists them with what it consumes in a
`Catalogue`. Publishing validates `data` against the model (a field the catalogue does not
know is a bug, not a silent extension); consumers read with `EventSpec.read`, which ignores
fields added by a newer minor version, and the shared consumer dead-letters an envelope
whose `schema_version` (the major version) the handler does not know. The AsyncAPI document
(`shared.asyncapi`) is generated from the catalogues, so the contract partners read is the
one the code enforces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import Invalid

M = TypeVar("M", bound=BaseModel)


class EventData(BaseModel):
    """Base of every event payload model. Reading ignores fields a newer minor version added;
    publishing refuses a field the model does not name (`EventSpec.dump`)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


@dataclass(frozen=True)
class EventSpec(Generic[M]):
    subject: str  # <service>.<entity>.<verb in the past tense>
    model: type[M]
    summary: str
    major: int = 1  # the envelope's schema_version; a breaking change of the model raises it

    @property
    def service(self) -> str:
        return self.subject.split(".", 1)[0]

    @property
    def stream(self) -> str:
        return self.service.upper()

    def dump(self, data: M | dict[str, Any]) -> dict[str, Any]:
        """`data` as published: validated against the model, JSON-ready (Decimal as text, dates ISO)."""
        if isinstance(data, self.model):
            return data.model_dump(mode="json")
        unknown = set(data) - set(self.model.model_fields)
        if unknown:
            raise TypeError(
                f"{self.subject}: {self.model.__name__} has no field(s) {', '.join(sorted(str(k) for k in unknown))}"
            )
        try:
            return self.model.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:  # a bug in the publisher: the change rolls back whole
            raise TypeError(f"{self.subject}: data does not match {self.model.__name__}: {exc}") from exc

    def read(self, data: dict[str, Any]) -> M:
        """A consumer's view of `data`: fields a newer minor version added are ignored; a missing or
        wrong field is Invalid naming it (the consumer dead-letters the event with that reason)."""
        try:
            return self.model.model_validate(data)
        except ValidationError as exc:
            errs = "; ".join(f"data.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
            raise Invalid(f"{self.subject} event data cannot apply: {errs}") from exc

    def json_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema(mode="serialization", ref_template="#/components/schemas/{model}")


@dataclass(frozen=True)
class Consumed:
    """A subject (or a `*`/`>` pattern) a service consumes, and the major versions it understands."""

    subject: str
    summary: str
    majors: frozenset[int] = frozenset({1})


@dataclass(frozen=True)
class Catalogue:
    """What one service publishes and consumes: the source of its part of the AsyncAPI document."""

    service: str
    publishes: tuple[EventSpec[Any], ...]
    consumes: tuple[Consumed, ...] = ()
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def spec(self, subject: str) -> EventSpec[Any]:
        for s in self.publishes:
            if s.subject == subject:
                return s
        raise KeyError(subject)

    def check(self, subject: str, data: Any) -> dict[str, Any]:
        """`data` as `subject` publishes it; TypeError for a subject this service does not publish."""
        try:
            spec = self.spec(subject)
        except KeyError:
            raise TypeError(f"{self.service} publishes no {subject!r}; add it to its events catalogue") from None
        return spec.dump(data)

    def majors_for(self, subject: str) -> frozenset[int]:
        """The versions this service's handler of `subject` accepts (every one when it names none)."""
        for c in self.consumes:
            if c.subject == subject:
                return c.majors
        return frozenset({1})
