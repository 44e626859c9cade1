"""The fast lane: a service's plain JSON POSTs answered without FastAPI's router.

Why: a posting's own work (the domain and its one statement) is about a third of
what the service spends on it; the rest went to matching the path against every
route, solving the dependency graph, the middleware layers and validation
plumbing, all on the same two cores as PostgreSQL and the gateway.

What takes the lane: a POST route of the service's own routers with a fixed path,
one JSON body model, dependencies that take only the request (identity, roles,
the runtime), and an endpoint that returns a `Response` itself. Such a route is
called exactly as FastAPI would call it: same endpoint, same dependencies, same
body model, same exception handlers, same metrics label; it is declared once, in
the service's api.py, and stays in the OpenAPI document.

What does not: anything else, and any request the lane cannot take cleanly (not
JSON, a body that does not parse or validate, a dependency that refuses). Those
go on to FastAPI with the body replayed, so every refusal is FastAPI's own
answer, byte for byte. A request handed on has its dependencies run again by
FastAPI, so a route's dependencies must be free of side effects (the services'
are: identity, roles, the runtime). Dependency overrides (tests) switch the lane
off.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_UNSUPPORTED = (
    "websocket_param_name",
    "http_connection_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
)


class _Lane:
    """One route, with what calling it needs worked out once."""

    def __init__(self, route: APIRoute):
        self.route = route
        self.endpoint = route.endpoint
        dependant = route.dependant
        self.body_field = dependant.body_params[0]
        self.body_name = self.body_field.name
        self.request_name = dependant.request_param_name
        # (keyword or None, call): the router's own dependencies have no keyword.
        self.dependencies = [(d.name, d.call) for d in dependant.dependencies]

    async def arguments(self, request: Request, body: bytes) -> dict[str, Any] | None:
        """The endpoint's keyword arguments, or None when FastAPI should answer instead."""
        try:
            value, errors = self.body_field.validate(orjson.loads(body), {}, loc=("body",))
        except orjson.JSONDecodeError:
            return None
        if errors:
            return None
        kwargs: dict[str, Any] = {self.body_name: value}
        if self.request_name:
            kwargs[self.request_name] = request
        solved: dict[Callable[..., Any], Any] = {}
        for name, call in self.dependencies:
            if call is None:
                return None
            if call not in solved:
                try:
                    solved[call] = await call(request)
                except Exception:  # noqa: BLE001 - FastAPI runs it again and answers with its handler
                    return None
            if name:
                kwargs[name] = solved[call]
        return kwargs


def lane_for(route: Any) -> _Lane | None:
    """A lane for `route` when it is the plain kind described above, else None."""
    if not isinstance(route, APIRoute) or route.methods != {"POST"} or "{" in route.path:
        return None
    d = route.dependant
    if not _plain(d, bodies=1) or not inspect.iscoroutinefunction(route.endpoint):
        return None
    field = d.body_params[0]
    model = getattr(field.field_info, "annotation", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or getattr(field.field_info, "embed", False):
        return None
    for sub in d.dependencies:
        if (
            not _plain(sub, bodies=0)
            or sub.dependencies
            or not sub.request_param_name
            or not inspect.iscoroutinefunction(sub.call)
        ):
            return None
    try:
        returns = inspect.signature(route.endpoint, eval_str=True).return_annotation
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: leave it to FastAPI
        return None
    if not (isinstance(returns, type) and issubclass(returns, Response)):
        return None
    return _Lane(route)


def _plain(d: Any, *, bodies: int) -> bool:
    """No path, query, header or cookie parameters, `bodies` body parameters, and nothing else FastAPI
    would have to supply (a websocket, a response to modify, background tasks, security scopes)."""
    return not (
        d.path_params
        or d.query_params
        or d.header_params
        or d.cookie_params
        or len(d.body_params) != bodies
        or any(getattr(d, name, None) for name in _UNSUPPORTED)
    )


class FastLaneMiddleware:
    """Pure ASGI, inside the request-context middleware (request id, metrics, access log)."""

    def __init__(self, app: ASGIApp, owner: FastAPI, routers: Iterable[APIRouter]):
        self.app = app
        self.owner = owner
        self.routers = list(routers)
        self._lanes: dict[str, _Lane] | None = None

    @property
    def lanes(self) -> dict[str, _Lane]:
        if self._lanes is None:  # built on first use: every route is registered by then
            self._lanes = {}
            for router in self.routers:
                for route in router.routes:
                    lane = lane_for(route)
                    if lane is not None:
                        self._lanes.setdefault(lane.route.path, lane)
        return self._lanes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or self.owner.dependency_overrides:
            await self.app(scope, receive, send)
            return
        lane = self.lanes.get(scope["path"])
        if lane is None or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before its body arrived: nobody to answer
        replay = _replay(body, receive)
        request = Request(scope, replay)
        kwargs = await lane.arguments(request, body)
        if kwargs is None:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = lane.route
        scope["endpoint"] = lane.endpoint
        scope.setdefault("path_params", {})
        try:
            response = await lane.endpoint(**kwargs)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise  # to the server-error middleware, as FastAPI would
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, replay, send)

    def _handler(self, exc: Exception) -> Callable[[Request, Exception], Awaitable[Response] | Response] | None:
        """The app's handler for `exc`, looked up the way Starlette's exception middleware does: by status
        code for an HTTPException, then by class (handlers for 500 and Exception belong to the
        server-error middleware)."""
        handlers = self.owner.exception_handlers
        if isinstance(exc, HTTPException) and exc.status_code != 500 and exc.status_code in handlers:
            return handlers[exc.status_code]
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            if cls in handlers:
                return handlers[cls]
        return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands out `body` once, then whatever the client sends next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
