"""Pins the FastAPI internals the fast lane reads, so an upgrade that changes them fails here, loudly.

shared/fastlane.py calls endpoints without FastAPI's router and dependency solving. It reads
`APIRoute.dependant` (its parameter lists, `request_param_name`, sub-dependencies with `name` and
`call`), a body field's `validate(value, values, loc=...) -> (value, errors)` and `field_info`, and
the app's `exception_handlers`. None of that is public API; if any of it moves, the lane must be
looked at again before the upgrade lands (or turned off: PITCREW_<SERVICE>_FAST_LANE=false).
"""

from __future__ import annotations

import inspect

import fastapi
import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from shared import fastlane


class Body(BaseModel):
    n: int


async def dep(request: Request) -> str:
    return "x"


def route() -> fastapi.routing.APIRoute:
    router = APIRouter()

    @router.post("/things")
    async def things(body: Body, request: Request, who: str = Depends(dep)) -> Response:
        return JSONResponse({"n": body.n})

    return next(r for r in router.routes if getattr(r, "path", None) == "/things")


def test_the_dependant_still_has_what_the_lane_reads():
    d = route().dependant
    for name in (
        "body_params",
        "path_params",
        "query_params",
        "header_params",
        "cookie_params",
        "dependencies",
        "request_param_name",
        *fastlane._UNSUPPORTED,
    ):
        assert hasattr(d, name), f"FastAPI {fastapi.__version__}: Dependant has no {name!r}; revisit shared/fastlane.py"
    assert d.request_param_name == "request"
    sub = d.dependencies[0]
    assert sub.name == "who" and sub.call is dep and sub.request_param_name == "request"


def test_a_body_field_still_validates_to_a_value_and_errors():
    field = route().dependant.body_params[0]
    assert field.name == "body" and field.field_info.annotation is Body
    assert getattr(field.field_info, "embed", False) in (False, None)
    value, errors = field.validate({"n": 3}, {}, loc=("body",))
    assert value == Body(n=3) and not errors
    value, errors = field.validate({"n": "three"}, {}, loc=("body",))
    assert errors, "validate must report errors instead of raising"


@pytest.mark.parametrize("service", ["budget", "registry"])
def test_the_services_hot_posts_still_take_the_lane(service):
    module = __import__(f"services.{service}.api", fromlist=["router"])
    lanes = [r.path for r in module.router.routes if fastlane.lane_for(r) is not None]
    assert lanes, f"no route of {service} takes the fast lane any more"


def test_the_lane_answers_as_fastapi_does():
    assert inspect.iscoroutinefunction(route().endpoint)
    assert fastlane.lane_for(route()) is not None
