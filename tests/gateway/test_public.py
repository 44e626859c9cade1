"""The public routes: offline API docs, the merged AsyncAPI document and its page, the OpenAPI contract."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from shared.openapi import MEDIA_TYPE
from tests.gateway.conftest import bearer, gateway_settings, running_gateway

pytestmark = pytest.mark.db

SERVICES = ("budget", "workflow", "kpi", "registry", "notify")


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


async def test_docs_load_nothing_from_elsewhere(gw):
    r = await gw.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    parser = _Refs()
    parser.feed(r.text)
    assert len(parser.urls) == 3, parser.urls  # the bundle, the stylesheet, the icon
    assert all(u.startswith("/") and not u.startswith("//") for u in parser.urls), parser.urls
    assert not re.search(r"https?://", r.text), "the page names another origin"
    assert '"validatorUrl": null' in r.text  # Swagger UI's online validator would call out
    assert "url: '/openapi.json'" in r.text
    expected = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for url in parser.urls:
        asset = await gw.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(expected[url[url.rfind(".") :]]), (url, asset.headers)
        assert len(asset.content) > 500
    bundle = next(u for u in parser.urls if u.endswith(".js"))
    assert b"SwaggerUIBundle" in (await gw.get(bundle)).content
    assert (await gw.get("/docs/assets/nope.js")).status_code == 404
    assert (await gw.get("/redoc")).status_code == 404  # FastAPI's ReDoc page loads from a CDN: not served


async def test_public_routes_need_no_token(gw):
    for path in ("/openapi.json", "/asyncapi.json", "/asyncapi", "/docs", "/health", "/docs/assets/swagger-ui.css"):
        r = await gw.get(path)
        assert r.status_code == 200, (path, r.text[:300])


async def test_asyncapi_merges_every_services_part(gw, net):
    doc = (await gw.get("/asyncapi.json")).json()
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["channels"]) == {"budget.thing.happened", "registry.tool.added"}
    thing = doc["channels"]["budget.thing.happened"]
    assert thing["x-pitcrew-stream"] == "BUDGET" and thing["x-pitcrew-publisher"] == "budget"
    assert thing["x-pitcrew-consumers"] == ["kpi"]  # kpi consumes budget.>
    assert doc["channels"]["registry.tool.added"]["x-pitcrew-consumers"] == ["budget"]
    assert {"BudgetThingHappened", "RegistryToolAdded"} <= set(doc["components"]["schemas"])  # namespaced
    # Workflow has no events (its /asyncapi.json is a 404): absent, not unavailable.
    assert "x-pitcrew-unavailable" not in doc


async def test_asyncapi_names_a_service_that_is_down_and_comes_back(gw, net):
    await net.down("registry.test")
    doc = (await gw.get("/asyncapi.json")).json()
    assert doc["x-pitcrew-unavailable"] == ["registry"]
    assert set(doc["channels"]) == {"budget.thing.happened"}
    page = (await gw.get("/asyncapi")).text
    assert "registry" in page and "missing" in page
    await net.up("registry.test")
    # Cached briefly while a part is missing, then fetched again.
    gw.app.state.gateway.get().asyncapi._cached = None
    assert "registry.tool.added" in (await gw.get("/asyncapi.json")).json()["channels"]


async def test_asyncapi_is_cached_like_the_openapi_document(gw, net):
    await gw.get("/asyncapi.json")
    hits = net.hits.get("budget.test", 0)
    for _ in range(3):
        assert (await gw.get("/asyncapi.json")).status_code == 200
        assert (await gw.get("/asyncapi")).status_code == 200
    assert net.hits.get("budget.test", 0) == hits


async def test_the_asyncapi_page_shows_each_channel(gw):
    r = await gw.get("/asyncapi")
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.search(r"(src|href)=\"?(https?:)?//", html), "the page loads something from elsewhere"
    section = html[html.index('id="budget.thing.happened"') :]
    section = section[: section.index("</section>")]
    for text in ("BUDGET", "budget", "kpi", "A thing happened in the budget", "thing_id", "The thing", "amount"):
        assert text in section, text
    assert re.search(r"region</td><td[^>]*>string or null</td><td>no", section)
    tool = html[html.index('id="registry.tool.added"') :]
    assert "integer" in tool and "<dd>2</dd>" in tool  # schema version 2


async def test_the_gateways_own_operations_document_every_status_with_its_media_type(gw):
    doc = (await gw.get("/openapi.json")).json()
    own = {p: item for p, item in doc["paths"].items() if not p.startswith(tuple(f"/{s}/" for s in SERVICES))}
    assert {"/gateway/v1/api-keys", "/gateway/v1/api-keys/{key_id}", "/webhooks/{source}", "/health"} <= set(own)
    for path, item in own.items():
        for method, op in item.items():
            responses = op["responses"]
            for status, response in responses.items():
                if status[0] in "45":
                    assert list(response["content"]) == [MEDIA_TYPE], (path, method, status)
                elif status != "204":
                    assert response.get("content"), (path, method, status)  # a media type for every body
            assert {"401", "403", "422", "500"} <= set(responses), (path, method)
    assert "/metrics" not in own  # the edge serves metrics on its metrics port only
    assert list(own["/gateway/v1/api-keys"]["get"]["responses"]["200"]["content"]) == ["application/json"]
    webhook = own["/webhooks/{source}"]["post"]["responses"]
    assert {"200", "202", "401", "404", "413", "422", "429"} <= set(webhook)
    assert webhook["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/WebhookAccepted")
    assert {"201", "413", "429"} <= set(own["/gateway/v1/api-keys"]["post"]["responses"])
    assert "404" in own["/gateway/v1/api-keys/{key_id}"]["delete"]["responses"]
    assert own["/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/GatewayHealth"
    )


async def test_proxied_operations_list_what_the_gateway_answers_in_front_of_the_service(gw):
    doc = (await gw.get("/openapi.json")).json()
    op = doc["paths"]["/budget/v1/items"]["get"]
    for status in ("400", "401", "403", "408", "413", "429", "502", "503", "504"):
        ref = op["responses"][status]["content"][MEDIA_TYPE]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"] and ref.endswith("Problem"), (status, ref)
    assert "/budget/asyncapi.json" not in doc["paths"]


async def test_the_merged_openapi_survives_a_restart_of_its_cache(new_db, net, token):
    """The document is built from arguments (no gateway state inside the merger): same result twice."""
    async with running_gateway(gateway_settings(await new_db("gateway"), openapi_cache_seconds=0)) as gw:
        first = (await gw.get("/openapi.json")).json()
        second = (await gw.get("/openapi.json", headers=bearer(token("admin")))).json()
        assert first == second and "/kpi/v1/items" in first["paths"]
