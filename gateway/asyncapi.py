"""The merged AsyncAPI 3.0 document of every service's events, and a readable view of it.

The services serve their parts at `/asyncapi.json` (shared.asyncapi.part, from their event
catalogues); the gateway fetches them like the OpenAPI parts (gateway.merged) and merges
them with shared.asyncapi.merge. `channels()` flattens a document into what a reader
wants per subject (stream, publisher, consumers, summary, payload fields): the HTML page
at `/asyncapi` and the generated docs/events.md are both rendered from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from gateway.merged import Part
from shared import asyncapi

REF_PREFIX = "#/components/schemas/"

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def merged(parts: list[Part]) -> dict[str, Any]:
    """The whole document from the parts that answered; a service that did not is named."""
    doc = asyncapi.merge([p.doc for p in parts if p.state == "ok"])
    unavailable = [p.service for p in parts if p.state == "unavailable"]
    if unavailable:
        doc["x-pitcrew-unavailable"] = unavailable
    return doc


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool
    description: str


@dataclass(frozen=True)
class Channel:
    subject: str
    stream: str
    publisher: str
    consumers: list[str]
    summary: str
    version: int | None
    payload: str  # the name of the `data` schema
    fields: list[Field]


def channels(doc: dict[str, Any]) -> list[Channel]:
    """Every channel of an AsyncAPI document made by shared.asyncapi, by subject."""
    schemas: dict[str, Any] = doc.get("components", {}).get("schemas", {})
    messages: dict[str, Any] = doc.get("components", {}).get("messages", {})
    out = []
    for subject, channel in sorted(doc.get("channels", {}).items()):
        message: dict[str, Any] = {}
        for ref in channel.get("messages", {}).values():
            message = messages.get(ref.get("$ref", "").rsplit("/", 1)[-1], {})
        props = message.get("payload", {}).get("properties", {})
        data_ref = props.get("data", {}).get("$ref", "")
        name = data_ref[len(REF_PREFIX) :] if data_ref.startswith(REF_PREFIX) else ""
        out.append(
            Channel(
                subject=subject,
                stream=channel.get("x-pitcrew-stream", ""),
                publisher=channel.get("x-pitcrew-publisher", ""),
                consumers=list(channel.get("x-pitcrew-consumers", [])),
                summary=channel.get("summary", ""),
                version=props.get("schema_version", {}).get("const"),
                payload=name,
                fields=fields_of(schemas.get(name, {})),
            )
        )
    return out


@dataclass(frozen=True)
class Shape:
    """A named type that payload fields refer to (a nested model, an enum)."""

    name: str
    description: str
    fields: list[Field]
    values: list[Any]  # an enum's values


def shapes(doc: dict[str, Any]) -> list[Shape]:
    """The schemas of a document that are not a channel's payload, by name."""
    payloads = {c.payload for c in channels(doc)}
    return [
        Shape(name, schema.get("description", ""), fields_of(schema), list(schema.get("enum", [])))
        for name, schema in sorted(doc.get("components", {}).get("schemas", {}).items())
        if name not in payloads
    ]


def fields_of(schema: dict[str, Any]) -> list[Field]:
    required = set(schema.get("required", []))
    return [
        Field(name, type_of(prop), name in required, prop.get("description", ""))
        for name, prop in schema.get("properties", {}).items()
    ]


def type_of(schema: dict[str, Any]) -> str:
    """A JSON Schema as a short type name: `string (date-time)`, `integer or null`, `list of string`."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "const" in schema:
        return f"{schema['const']!r}"
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(type_of(s) for s in schema[key])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(type_of({**schema, "type": k}) for k in kind)
    if kind == "array":
        return f"list of {type_of(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {type_of(schema['additionalProperties'])}"
    if kind is None:
        return "any"
    return f"{kind} ({schema['format']})" if "format" in schema else str(kind)


def page(doc: dict[str, Any]) -> str:
    """The HTML page of a merged document (server-rendered, no script, nothing from elsewhere)."""
    return _templates.get_template("asyncapi.html").render(
        info=doc.get("info", {}),
        channels=channels(doc),
        shapes=shapes(doc),
        unavailable=doc.get("x-pitcrew-unavailable", []),
        servers=doc.get("servers", {}),
    )
