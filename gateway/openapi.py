"""One OpenAPI document for the whole suite: the gateway's own routes and every service's, merged.

Each service's spec (fetched by gateway.merged) has its paths prefixed with the service
name, as the gateway exposes them, and its schema names prefixed too so two services'
`PlanIn`s cannot collide (the title too, which client generators name their classes by). A schema
every service shares word for word (`Problem`, the audit `Entry`, a `DeadLetter`) is kept once,
under its own name. Every proxied operation also lists what the gateway itself can
answer in front of the service (400, 401, 403, 408, 413, 429, 502, 503, 504, as problem+json). A
service that is down is left out and named in `x-pitcrew-unavailable`.
"""

from __future__ import annotations

import copy
from typing import Any

from gateway.merged import Part
from shared.openapi import DESCRIPTIONS, MEDIA_TYPE

OPS_PATHS = {"/health", "/ready", "/metrics", "/asyncapi.json"}
REF_PREFIX = "#/components/schemas/"
# What the gateway answers itself in front of any service (authentication, policy, path and body
# checks, rate limits, the upstream failing); the service's own statuses come with its spec.
GATEWAY_STATUSES = (400, 401, 403, 408, 413, 429, 502, 503, 504)
GATEWAY_DESCRIPTIONS = {
    400: "The path cannot be routed as written (an encoded slash), or the client went away mid-body",
    408: "The request body stopped arriving (nothing for the upstream timeout)",
}


def merge(own: dict[str, Any], parts: list[Part]) -> dict[str, Any]:
    doc = copy.deepcopy(own)
    doc.setdefault("paths", {})
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    doc["security"] = [{"bearer": []}, {"apiKey": []}]
    tags = doc.setdefault("tags", [])
    unavailable = []
    for part in parts:
        if part.state != "ok":
            if part.state == "unavailable":
                unavailable.append(part.service)
            continue
        service, spec = part.service, part.doc
        theirs: dict[str, Any] = spec.get("components", {}).get("schemas") or {}
        names = _names(theirs, schemas, service.capitalize() + "_")
        spec = _rename_refs(spec, names)
        for name, schema in (spec.get("components", {}).get("schemas") or {}).items():
            if names[name] == name:
                schemas.setdefault(name, schema)
            else:
                schemas[names[name]] = {**schema, "title": names[name]}
        for path, item in (spec.get("paths") or {}).items():
            if path in OPS_PATHS:
                continue
            for op in item.values():
                if isinstance(op, dict) and "responses" in op:
                    op["tags"] = [service] + [t for t in op.get("tags", []) if t != service]
                    if "operationId" in op:
                        op["operationId"] = f"{service}_{op['operationId']}"
                    _gateway_statuses(op["responses"])
            doc["paths"][f"/{service}{path}"] = item
        tags.append({"name": service, "description": spec.get("info", {}).get("description", "")})
    if unavailable:
        doc["x-pitcrew-unavailable"] = unavailable
    return doc


def _names(theirs: dict[str, Any], ours: dict[str, Any], prefix: str) -> dict[str, str]:
    """Each of a service's schema names as the merged document calls it: its own name when the
    schema is already there word for word (its references shared as well), else prefixed. A name
    not yet there is taken as shared when it is the first service's (a later one that differs is
    prefixed)."""
    shared = {n for n in theirs if n in ours or n in SHAREABLE}
    while True:
        names = {n: n if n in shared else prefix + n for n in theirs}
        differs = {n for n in shared if n in ours and _rename_refs(theirs[n], names) != ours[n]}
        differs |= {n for n in shared if n not in ours and _refs(theirs[n]) - shared}
        if not differs:
            return names
        shared -= differs


# The schemas of the routes every service shares (shared.ops, shared.audit, shared.deadletters):
# one model each in a generated client, not one per service.
SHAREABLE = frozenset(
    {"Problem", "FieldProblem", "Entry", "EntryList", "DeadLetter", "DeadLetterList", "Discard", "ReplayRange"}
    | {"Outcome", "Outcomes"}
)


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"][len(REF_PREFIX) :]} if str(node.get("$ref", "")).startswith(REF_PREFIX) else set()
        return found.union(*(_refs(v) for k, v in node.items() if k != "$ref"))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _gateway_statuses(responses: dict[str, Any]) -> None:
    for status in GATEWAY_STATUSES:
        responses.setdefault(
            str(status),
            {
                "description": GATEWAY_DESCRIPTIONS.get(status) or DESCRIPTIONS[status],
                "content": {MEDIA_TYPE: {"schema": {"$ref": f"{REF_PREFIX}Problem"}}},
            },
        )


def _rename_refs(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith(REF_PREFIX):
                name = v[len(REF_PREFIX) :]
                out[k] = REF_PREFIX + names.get(name, name)
            else:
                out[k] = _rename_refs(v, names)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, names) for v in node]
    return node
