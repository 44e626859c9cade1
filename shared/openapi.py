"""OpenAPI documents that say what a client really gets back: problem+json for every error.

Routes list the error statuses they can answer (`responses=problems(404, 409)`); every route
also answers 401 (no or a bad identity), 403 (role or scope) and 422 (bad input), and 500. The
document is post-processed once (`install`): each 4xx and 5xx response carries the `Problem`
schema under `application/problem+json` (FastAPI's own `HTTPValidationError` is not what a
Pitcrew service answers and is dropped), so a generated client knows every body it can meet.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

MEDIA_TYPE = "application/problem+json"

DESCRIPTIONS = {
    400: "Malformed request (a header or the body cannot be read)",
    401: "No valid identity: the request did not come through the gateway, or its token is bad or expired",
    403: "The caller's roles or scopes do not allow this",
    404: "No such resource (or not one the caller may see)",
    409: "Conflicts with the current state; nothing was written",
    412: "If-Match names a stale version; fetch the resource again",
    413: "The body is larger than this route accepts",
    415: "The body's media type is not one this route reads",
    422: "Bad input: `errors` names every bad field",
    428: "This change needs an If-Match header",
    429: "Rate limit exceeded; retry after the Retry-After header",
    499: "The caller disconnected; the work was stopped",
    500: "Unexpected error, logged with the request id",
    502: "An upstream service answered badly",
    503: "A dependency is unavailable; retry later",
    504: "An upstream service did not answer in time",
}
ALWAYS = (401, 403, 422, 500)


class FieldProblem(BaseModel):
    field: str = Field(description="Where: `amount`, `query.from`, `rows[3].code`, `header.If-Match`, `body`")
    message: str
    code: str = Field(description="A stable machine-readable reason, e.g. `invalid`, `not_found`, `duplicate`")


class Problem(BaseModel):
    """RFC 9457 problem details, with `errors` naming each bad field."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    type: str = Field(description="A URI naming the kind of problem, e.g. https://pitcrew.dev/problems/conflict")
    title: str
    status: int
    detail: str = Field(description="What went wrong and what to do about it, in words a person can act on")
    instance: str | None = None
    errors: list[FieldProblem] | None = None


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these statuses answer problem+json (401, 403, 422, 500 always do)."""
    return {s: {"description": DESCRIPTIONS.get(s, "Problem")} for s in sorted({*statuses, *ALWAYS})}


def _problem_content() -> dict[str, Any]:
    return {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def finish(doc: dict[str, Any]) -> dict[str, Any]:
    """Every error response of `doc` as problem+json with the Problem schema, in place."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, FieldProblem):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas[model.__name__] = schema
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path in doc.get("paths", {}).values():
        for op in path.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            for status in ALWAYS:
                responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
            for status, response in responses.items():
                if status[:1] in ("4", "5"):
                    response["content"] = _problem_content()
                    if response.get("description") in (None, "Validation Error", "Additional Response"):
                        response["description"] = DESCRIPTIONS.get(int(status), "Problem")
    return doc


def install(app: FastAPI) -> None:
    """Build the app's document once, problem responses included, when it is first asked for."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                    tags=app.openapi_tags,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
