"""Routes of the notify service: parse, authorize, call the domain, shape the answer.

Two routers: `router` needs the gateway's identity (the directory, preferences, the inbox, partner
subscriptions); `public` serves the links in messages (approve/reject, unsubscribe), which work
without signing in because the signed link is the proof (the gateway lets them through unauthenticated).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from services.notify import decisions, inbox, people, preferences, schemas, subscriptions, urls
from services.notify.container import Notify, domain
from services.notify.mail import environment
from shared.app import Runtime, get_runtime
from shared.errors import Forbidden, Invalid
from shared.http import JsonRoute, parse_if_match
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)
public = APIRouter(prefix="/v1")

admins = require_roles()  # admin only
directory_readers = require_roles("mops")
subscribers = require_roles("partner")
Limit = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
IfMatch = Header(None, alias="If-Match")
CSV_TYPES = ("text/csv", "application/csv", "text/plain")
_pages = environment()


def with_etag(body: BaseModel, version: int, status_code: int = 200) -> Response:
    return Response(
        body.model_dump_json(), status_code=status_code, media_type="application/json", headers={"ETag": f'"{version}"'}
    )


# --- the directory --------------------------------------------------------------------------------


@router.post("/people", status_code=201, response_model=schemas.PersonOut, responses=problems(409))
async def create_person(
    body: schemas.PersonIn, request: Request, p: Principal = Depends(admins), rt: Runtime = Depends(get_runtime)
) -> Response:
    return await rt.idempotent(request, p, lambda uow: people.create_person(uow, p, body=body))


@router.get("/people", response_model=schemas.PersonPage, responses=problems())
async def list_people(
    rt: Runtime = Depends(get_runtime),
    _: Principal = Depends(directory_readers),
    limit: int = Limit,
    cursor: str | None = None,
    role: str | None = None,
    team: str | None = None,
) -> schemas.PersonPage:
    async with rt.unit_of_work(readonly=True) as uow:
        return await people.list_people(uow, limit=limit, cursor=cursor, role=role, team=team)


@router.post(
    "/people/import",
    response_model=schemas.ImportResult,
    responses=problems(415),
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}},
)
async def import_people(
    request: Request, p: Principal = Depends(admins), rt: Runtime = Depends(get_runtime)
) -> schemas.ImportResult:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in CSV_TYPES:
        raise Invalid.on("header.Content-Type", "must be text/csv")
    try:
        text = (await request.body()).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid.on("body", "is not UTF-8 text") from exc
    async with rt.unit_of_work() as uow:
        return await people.import_csv(uow, p, text=text)


@router.get("/people/{person_id}", response_model=schemas.PersonOut, responses=problems(404))
async def get_person(
    person_id: str, p: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
) -> Response:
    people.ensure_may_read(p, person_id)
    async with rt.unit_of_work(readonly=True) as uow:
        out = people.record(await people.get_person(uow, person_id))
    return with_etag(out, out.version)


@router.put("/people/{person_id}", response_model=schemas.PersonOut, responses=problems(404, 412))
async def put_person(
    person_id: str,
    body: schemas.PersonFields,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    if_match: str | None = IfMatch,
) -> Response:
    version = parse_if_match(if_match, required=False)
    async with rt.unit_of_work() as uow:
        out = await people.update_person(uow, p, person_id=person_id, body=body, expected_version=version)
    return with_etag(out, out.version)


@router.put("/teams/{name}", response_model=schemas.TeamOut, responses=problems())
async def put_team(
    name: str,
    body: schemas.TeamIn,
    _: Principal = Depends(admins),
    rt: Runtime = Depends(get_runtime),
    n: Notify = Depends(domain),
) -> schemas.TeamOut:
    if len(name) > 100:
        raise Invalid.on("path.name", "must be at most 100 characters")
    for field in ("slack_webhook_url", "teams_webhook_url"):
        if (value := getattr(body, field)) is not None:
            await urls.check(value, field, allow_private=n.settings.allow_private_urls)
    async with rt.unit_of_work() as uow:
        return await people.put_team(uow, name=name, body=body)


@router.get("/people/{person_id}/preferences", response_model=schemas.Preferences, responses=problems(404))
async def get_preferences(
    person_id: str, p: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
) -> schemas.Preferences:
    people.ensure_may_read(p, person_id)
    async with rt.unit_of_work(readonly=True) as uow:
        await people.get_person(uow, person_id)
        return await preferences.get(uow, person_id)


@router.put("/people/{person_id}/preferences", response_model=schemas.Preferences, responses=problems(404))
async def put_preferences(
    person_id: str,
    body: schemas.Preferences,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> schemas.Preferences:
    if p.subject != person_id and not p.is_admin:
        raise Forbidden("Only the person themself (or an admin) sets their preferences.")
    async with rt.unit_of_work() as uow:
        await people.get_person(uow, person_id)
        return await preferences.put(uow, person_id, body)


# --- the in-app inbox -----------------------------------------------------------------------------


@router.get("/inbox", response_model=schemas.InboxPage, responses=problems())
async def get_inbox(
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    unread: bool = False,
    limit: int = Limit,
    cursor: str | None = None,
) -> schemas.InboxPage:
    async with rt.unit_of_work(readonly=True) as uow:
        return await inbox.list_inbox(uow, p, unread=unread, limit=limit, cursor=cursor)


@router.post("/inbox/{notification_id}/read", response_model=schemas.InboxItem, responses=problems(404))
async def mark_read(
    notification_id: str, p: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
) -> schemas.InboxItem:
    async with rt.unit_of_work() as uow:
        return await inbox.mark_read(uow, p, notification_id=notification_id)


# --- partner subscriptions ------------------------------------------------------------------------


@router.post("/subscriptions", status_code=201, response_model=schemas.SubscriptionCreated, responses=problems())
async def create_subscription(
    body: schemas.SubscriptionIn,
    request: Request,
    p: Principal = Depends(subscribers),
    rt: Runtime = Depends(get_runtime),
    n: Notify = Depends(domain),
) -> Response:
    allow = n.settings.allow_private_urls
    return await rt.idempotent(request, p, lambda uow: subscriptions.create(uow, p, body=body, allow_private=allow))


@router.get("/subscriptions", response_model=schemas.SubscriptionPage, responses=problems())
async def list_subscriptions(
    p: Principal = Depends(subscribers),
    rt: Runtime = Depends(get_runtime),
    limit: int = Limit,
    cursor: str | None = None,
) -> schemas.SubscriptionPage:
    async with rt.unit_of_work(readonly=True) as uow:
        return await subscriptions.list_mine(uow, p, limit=limit, cursor=cursor)


@router.get("/subscriptions/{subscription_id}", response_model=schemas.SubscriptionOut, responses=problems(404))
async def get_subscription(
    subscription_id: str, p: Principal = Depends(subscribers), rt: Runtime = Depends(get_runtime)
) -> schemas.SubscriptionOut:
    async with rt.unit_of_work(readonly=True) as uow:
        return subscriptions.record(await subscriptions.get(uow, p, subscription_id))


@router.delete("/subscriptions/{subscription_id}", status_code=204, responses=problems(404))
async def delete_subscription(
    subscription_id: str, p: Principal = Depends(subscribers), rt: Runtime = Depends(get_runtime)
) -> Response:
    async with rt.unit_of_work() as uow:
        await subscriptions.delete(uow, p, subscription_id)
    return Response(status_code=204)


@router.get("/subscriptions/{subscription_id}/deliveries", response_model=schemas.DeliveryPage, responses=problems(404))
async def list_deliveries(
    subscription_id: str,
    p: Principal = Depends(subscribers),
    rt: Runtime = Depends(get_runtime),
    limit: int = Limit,
    cursor: str | None = None,
) -> schemas.DeliveryPage:
    async with rt.unit_of_work(readonly=True) as uow:
        return await subscriptions.deliveries(uow, p, subscription_id, limit=limit, cursor=cursor)


@router.post("/subscriptions/{subscription_id}/redeliver", response_model=schemas.Redelivered, responses=problems(404))
async def redeliver(
    subscription_id: str,
    body: schemas.RedeliverIn,
    p: Principal = Depends(subscribers),
    rt: Runtime = Depends(get_runtime),
    n: Notify = Depends(domain),
) -> schemas.Redelivered:
    async with rt.unit_of_work() as uow:
        out = await subscriptions.redeliver(uow, p, subscription_id, body=body)
    n.hooks.wake()
    return out


# --- links in messages (no sign-in) ---------------------------------------------------------------


def page(pg: decisions.Page) -> HTMLResponse:
    html = _pages.get_template("page.html.j2").render(
        heading=pg.heading, lines=pg.lines, facts=pg.facts, button=pg.button
    )
    return HTMLResponse(
        html, status_code=pg.status_code, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


@public.get("/actions/{token}", response_class=HTMLResponse, include_in_schema=False)
async def action_page(token: str, rt: Runtime = Depends(get_runtime), n: Notify = Depends(domain)) -> HTMLResponse:
    async with rt.unit_of_work(readonly=True) as uow:
        return page(await decisions.confirmation(uow, n.links, token))


@public.post("/actions/{token}", response_class=HTMLResponse, include_in_schema=False)
async def action_decide(token: str, rt: Runtime = Depends(get_runtime), n: Notify = Depends(domain)) -> HTMLResponse:
    async with rt.unit_of_work() as uow:
        claimed = await decisions.claim(uow, n.links, token)
    if isinstance(claimed, decisions.Page):
        return page(claimed)
    link, person = claimed
    status, detail = await n.decider.call(person, link)
    async with rt.unit_of_work() as uow:
        return page(await decisions.settle(uow, link.id, status, detail))


@public.get("/unsubscribe/{token}", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_page(token: str, n: Notify = Depends(domain)) -> HTMLResponse:
    person_id, kind = n.links.unsubscriber(token)
    what = "every kind of notification you may turn off" if kind == "*" else f"notifications of the kind {kind}"
    if kind in preferences.REQUIRED:
        return page(decisions.Page("This message cannot be unsubscribed", ["Your role requires it."]))
    return page(decisions.Page("Stop these messages?", [f"You will no longer receive {what}."], button="Unsubscribe"))


@public.post("/unsubscribe/{token}", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe(token: str, rt: Runtime = Depends(get_runtime), n: Notify = Depends(domain)) -> HTMLResponse:
    person_id, kind = n.links.unsubscriber(token)
    async with rt.unit_of_work() as uow:
        await people.get_person(uow, person_id)
        done = await preferences.unsubscribe(uow, person_id, kind)
    if not done:
        return page(decisions.Page("This message cannot be unsubscribed", ["Your role requires it."]))
    return page(decisions.Page("Unsubscribed", ["You can turn it on again in your preferences."]))
