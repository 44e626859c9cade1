"""Every route documents the statuses it can answer (issue 24, "Contract and CI").

`make fuzz` checks this from outside on a running stack; these tests check it from the source, for
every service and the gateway, so a route added without its `responses=problems(...)` fails here in
seconds: a status the route's own code answers (`raise NotFound`, `HTTPException(415)`,
`problem(413)`, a required If-Match) is declared, a route addressing one row by a path parameter
declares 404, one reading If-Match declares 412, every error is problem+json and every success
names its media type and schema.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from collections.abc import Iterator
from types import ModuleType

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from shared import errors
from shared.openapi import ALWAYS, MEDIA_TYPE, finish
from shared.problems import STATUS_OF

MODULES = [
    "services.budget.api",
    "services.budget.api_ledger",
    "services.budget.api_integrations",
    "services.budget.api_erp",
    "services.budget.api_versions",
    "services.workflow.api",
    "services.workflow.api_requests",
    "services.workflow.api_deliverables",
    "services.workflow.api_attachments",
    "services.kpi.api",
    "services.kpi.api_insights",
    "services.registry.api",
    "services.registry.api_stack",
    "services.notify.api",
    "gateway.api",
    "gateway.public",
    "shared.ops",
    "shared.audit",
    "shared.deadletters",
]
ERRORS = {cls.__name__: status for cls, status in STATUS_OF.items()}
assert all(issubclass(getattr(errors, name), errors.DomainError) for name in ERRORS)


def routers(module: ModuleType) -> list[APIRouter]:
    return [v for v in vars(module).values() if isinstance(v, APIRouter)]


def routes(module: ModuleType) -> Iterator[APIRoute]:
    for router in routers(module):
        yield from (r for r in router.routes if isinstance(r, APIRoute) and r.include_in_schema)


def answered(func: object, module: ModuleType, seen: set[str] | None = None) -> set[int]:
    """The statuses `func`'s own code (and the module's helpers it calls) answers with a problem."""
    seen = seen if seen is not None else set()
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return set()
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Attribute) and target.attr == "on":
                target = target.value
            if isinstance(target, ast.Name) and target.id in ERRORS:
                found.add(ERRORS[target.id])
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        name = node.func.id
        literal = node.args[0] if node.args and isinstance(node.args[0], ast.Constant) else None
        if name in ("HTTPException", "problem") and literal is not None and isinstance(literal.value, int):
            found.add(literal.value)
        elif name == "parse_if_match":
            if any(k.arg == "required" and getattr(k.value, "value", False) is True for k in node.keywords):
                found.add(428)
        elif name not in seen and inspect.isfunction(helper := vars(module).get(name)):
            if helper.__module__ == module.__name__:
                seen.add(name)
                found |= answered(helper, module, seen)
    return found


@pytest.mark.parametrize("name", MODULES)
def test_what_a_route_answers_itself_is_declared(name: str):
    module = importlib.import_module(name)
    missing = []
    for route in routes(module):
        declared = {int(s) for s in route.responses} | {route.status_code or 200} | set(ALWAYS)
        if extra := answered(route.endpoint, module) - declared:
            missing.append((sorted(route.methods), route.path, sorted(extra)))
    assert not missing, missing


@pytest.mark.parametrize("name", MODULES)
def test_the_document_names_every_answer_with_its_media_type(name: str):
    app = FastAPI()
    for router in routers(importlib.import_module(name)):
        app.include_router(router)
    doc = finish(get_openapi(title=name, version="1", routes=app.routes))
    wrong = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses, params = op["responses"], op.get("parameters", [])
            if method != "put" and any(p["in"] == "path" for p in params) and "404" not in responses:
                wrong.append((method, path, "a row addressed by its path can be missing: 404"))
            if any(p["in"] == "header" and p["name"].lower() == "if-match" for p in params) and "412" not in responses:
                wrong.append((method, path, "If-Match can be stale: 412"))
            for status, response in responses.items():
                content = response.get("content", {})
                if status[0] in "45" and list(content) != [MEDIA_TYPE]:
                    wrong.append((method, path, status, list(content)))
                if status[0] == "2" and status != "204":
                    if not content or not all(c.get("schema") for c in content.values()):
                        wrong.append((method, path, status, "no media type or schema"))
    assert not wrong, wrong
