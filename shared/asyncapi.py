"""The AsyncAPI 3.0 document of Pitcrew's events, generated from the services' catalogues.

Every published subject becomes a channel (its address, its JetStream stream) with one
message: the envelope, whose `data` is the payload model's JSON Schema. Each service gets a
`send` operation per subject it publishes and a `receive` operation per subject it consumes
(patterns such as `budget.>` are expanded to the channels they match), so a reader sees who
publishes and who consumes every event. A service serves its own part at `/asyncapi.json`;
the gateway merges the parts (`merge`).
"""

from __future__ import annotations

import re
from typing import Any

from shared.contracts import Catalogue, EventSpec

ENVELOPE_FIELDS: dict[str, Any] = {
    "id": {"type": "string", "format": "uuid", "description": "Unique per event; the JetStream Nats-Msg-Id"},
    "type": {"type": "string", "description": "The subject, e.g. budget.commitment.requested"},
    "source": {"type": "string", "description": "The publishing service"},
    "time": {"type": "string", "format": "date-time", "description": "When it happened (UTC, ISO 8601)"},
    "subject_id": {"type": "string", "description": "The entity the event is about"},
    "correlation_id": {"type": ["string", "null"], "description": "The request or event that caused it"},
    "schema_version": {
        "type": "integer",
        "description": "Major version of data; consumers dead-letter one they do not know",
    },
}


def _title(subject: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", subject))


def _message(spec: EventSpec[Any], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = spec.json_schema()
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    name = spec.model.__name__
    schemas[name] = schema
    return {
        "name": _title(spec.subject),
        "title": spec.subject,
        "summary": spec.summary,
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "required": ["id", "type", "source", "time", "subject_id", "schema_version", "data"],
            "properties": {
                **ENVELOPE_FIELDS,
                "type": {**ENVELOPE_FIELDS["type"], "const": spec.subject},
                "schema_version": {**ENVELOPE_FIELDS["schema_version"], "const": spec.major},
                "data": {"$ref": f"#/components/schemas/{name}"},
            },
        },
    }


def _namespaced(schemas: dict[str, Any], service: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The schemas renamed `<Service><Name>` (unless already so), with every `$ref` between them rewritten:
    two services' models may share a name, and merged documents must not overwrite one with the other."""
    prefix = service[:1].upper() + service[1:]
    names = {n: n if n.startswith(prefix) else prefix + n for n in schemas}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str) and value.startswith("#/components/schemas/"):
                    name = value.rsplit("/", 1)[1]
                    out[key] = f"#/components/schemas/{names.get(name, name)}"
                else:
                    out[key] = rewrite(value)
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    return {names[n]: rewrite(s) for n, s in schemas.items()}, names


def part(catalogue: Catalogue) -> dict[str, Any]:
    """One service's channels (what it publishes) and operations (what it publishes and consumes)."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for spec in catalogue.publishes:
        key = _title(spec.subject)
        messages[key] = _message(spec, schemas)
        channels[spec.subject] = {
            "address": spec.subject,
            "title": spec.subject,
            "summary": spec.summary,
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            "x-pitcrew-stream": spec.stream,
            "x-pitcrew-publisher": catalogue.service,
        }
        operations[f"{catalogue.service}.send.{spec.subject}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{spec.subject}"},
            "summary": f"{catalogue.service} publishes {spec.subject}",
            "x-pitcrew-service": catalogue.service,
        }
    schemas, names = _namespaced(schemas, catalogue.service)
    for message in messages.values():
        data = message["payload"]["properties"]["data"]
        data["$ref"] = "#/components/schemas/" + names[data["$ref"].rsplit("/", 1)[1]]
    return {
        "service": catalogue.service,
        "channels": channels,
        "operations": operations,
        "consumes": [
            {"subject": c.subject, "summary": c.summary, "majors": sorted(c.majors)} for c in catalogue.consumes
        ],
        "components": {"messages": messages, "schemas": schemas},
    }


def _matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def merge(
    parts: list[dict[str, Any]], *, version: str = "1.0.0", servers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The whole document from every service's part: receive operations join the channels they match."""
    doc: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Pitcrew events",
            "version": version,
            "description": (
                "Every event a Pitcrew service publishes on NATS JetStream (one stream per publishing service), "
                "in the envelope id, type, source, time, subject_id, correlation_id, schema_version, data. "
                "Consumers are durable and idempotent; an event a consumer cannot apply is dead-lettered to "
                "dlq.<service> with its reason."
            ),
        },
        "defaultContentType": "application/json",
        "servers": servers
        or {"nats": {"host": "127.0.0.1:4222", "protocol": "nats", "description": "NATS with JetStream"}},
        "channels": {},
        "operations": {},
        "components": {"messages": {}, "schemas": {}},
    }
    for p in parts:
        doc["channels"].update(p["channels"])
        doc["operations"].update(p["operations"])
        doc["components"]["messages"].update(p["components"]["messages"])
        doc["components"]["schemas"].update(p["components"]["schemas"])
    for p in parts:
        for consumed in p.get("consumes", []):
            for subject in sorted(doc["channels"]):
                if _matches(consumed["subject"], subject):
                    doc["operations"][f"{p['service']}.receive.{subject}"] = {
                        "action": "receive",
                        "channel": {"$ref": f"#/channels/{subject}"},
                        "summary": consumed["summary"],
                        "x-pitcrew-service": p["service"],
                        "x-pitcrew-schema-versions": consumed["majors"],
                    }
    for subject, channel in doc["channels"].items():
        channel["x-pitcrew-consumers"] = sorted(
            op["x-pitcrew-service"]
            for op in doc["operations"].values()
            if op["action"] == "receive" and op["channel"]["$ref"] == f"#/channels/{subject}"
        )
    return doc


def document(catalogues: list[Catalogue], **kw: Any) -> dict[str, Any]:
    return merge([part(c) for c in catalogues], **kw)
