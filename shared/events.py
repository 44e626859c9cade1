"""The event envelope every Pitcrew service publishes and consumes, and the streams."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from shared.context import request_id_var
from shared.money import decimal_text

SCHEMA_VERSION = 1

# One JetStream stream per publishing service, plus the dead-letter stream.
STREAMS: dict[str, list[str]] = {
    "BUDGET": ["budget.>"],
    "WORKFLOW": ["workflow.>"],
    "KPI": ["kpi.>"],
    "REGISTRY": ["registry.>"],
    "GATEWAY": ["gateway.>"],
    "DLQ": ["dlq.>"],
}


def stream_for(subject: str) -> str:
    prefix = subject.split(".", 1)[0]
    return "DLQ" if prefix == "dlq" else prefix.upper()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@dataclass(frozen=True)
class Envelope:
    type: str
    source: str
    subject_id: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    correlation_id: str | None = None
    schema_version: int = SCHEMA_VERSION

    def body(self) -> dict[str, Any]:
        # A shallow dict: dataclasses.asdict would deep-copy `data` on every publish.
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def to_json(self) -> str:
        return orjson.dumps(self.body(), default=_default, option=orjson.OPT_NON_STR_KEYS).decode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        """An envelope as published, or ValueError (the consumer dead-letters it at once). Parsed by
        orjson, as HTTP bodies are: the standard parser let NaN, Infinity and lone surrogates into
        handlers, and a stored Infinity broke every later list of the instance it started."""
        body = orjson.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("event envelope must be a JSON object")
        missing = [k for k in ("id", "type", "source", "subject_id", "data") if k not in body]
        if missing:
            raise ValueError(f"event envelope lacks {', '.join(missing)}")
        wrong = [
            k
            for k in ("id", "type", "source", "subject_id", "time")
            if k in body and not (isinstance(body[k], str) and body[k])
        ]
        if not isinstance(body["data"], dict):
            wrong.append("data")
        if body.get("correlation_id") is not None and not isinstance(body["correlation_id"], str):
            wrong.append("correlation_id")
        if "schema_version" in body and type(body["schema_version"]) is not int:
            wrong.append("schema_version")
        if wrong:
            raise ValueError(f"event envelope has {', '.join(wrong)} of the wrong type (text, data an object)")
        known = {k: body[k] for k in cls.__dataclass_fields__ if k in body}
        return cls(**known)

    @property
    def occurred_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.time)


def new_event(
    type: str, source: str, subject_id: str, data: dict[str, Any], correlation_id: str | None = None
) -> Envelope:
    return Envelope(
        type=type,
        source=source,
        subject_id=str(subject_id),
        data=data,
        correlation_id=correlation_id or request_id_var.get(),
    )
