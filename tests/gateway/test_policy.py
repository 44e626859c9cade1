"""The default policy: every role over every route class, through a real gateway; policy loading."""

from __future__ import annotations

import pytest

from gateway.policy import Policy, PolicyError
from shared.identity import ROLES
from tests.gateway.conftest import assert_problem, bearer

ROUTES = {
    # label: (method, path through the gateway)
    "budget.read": ("GET", "/budget/v1/plans"),
    "budget.configure": ("POST", "/budget/v1/plans"),
    "budget.edit": ("PATCH", "/budget/v1/plans/p1"),
    "budget.commit": ("POST", "/budget/v1/commitments"),
    "budget.actual": ("POST", "/budget/v1/actuals"),
    "budget.approve": ("POST", "/budget/v1/commitments/c1/approve"),
    "budget.erp": ("POST", "/budget/v1/erp/purchase-orders"),
    "budget.retry": ("POST", "/budget/v1/refusals/r1/retry"),
    "workflow.read": ("GET", "/workflow/v1/tasks"),
    "workflow.define": ("POST", "/workflow/v1/definitions"),
    "workflow.calendar": ("PUT", "/workflow/v1/calendars/de-office"),
    "workflow.start": ("POST", "/workflow/v1/instances"),
    "workflow.cancel": ("POST", "/workflow/v1/instances/i1/cancel"),
    "workflow.resubmit": ("POST", "/workflow/v1/instances/i1/resubmit"),
    "workflow.task": ("POST", "/workflow/v1/tasks/t1/approve"),
    "kpi.read": ("GET", "/kpi/v1/metrics/cpl/series"),
    "kpi.query": ("POST", "/kpi/v1/query"),
    "kpi.define": ("POST", "/kpi/v1/metrics"),
    "kpi.delete": ("DELETE", "/kpi/v1/targets/t1"),
    "kpi.measure": ("POST", "/kpi/v1/measurements"),
    "kpi.touch": ("POST", "/kpi/v1/touchpoints"),
    "kpi.convert": ("POST", "/kpi/v1/conversions"),
    "kpi.lifecycle": ("POST", "/kpi/v1/lifecycle"),
    "kpi.attribution": ("GET", "/kpi/v1/attribution"),
    "kpi.cohorts": ("GET", "/kpi/v1/cohorts"),
    "kpi.anomalies": ("GET", "/kpi/v1/anomalies"),
    "kpi.anomaly_dismiss": ("POST", "/kpi/v1/anomalies/a1/dismiss"),
    "kpi.anomaly_check": ("POST", "/kpi/v1/anomalies/check"),
    "kpi.journey": ("GET", "/kpi/v1/journeys/j1"),
    "registry.read": ("GET", "/registry/v1/tools"),
    "registry.tool": ("POST", "/registry/v1/tools"),
    "registry.contract": ("POST", "/registry/v1/contracts"),
    "registry.contract_edit": ("PATCH", "/registry/v1/contracts/c1"),
    "registry.usage": ("POST", "/registry/v1/utilization"),
    "registry.fx": ("POST", "/registry/v1/fx-rates"),
    "gateway.keys_read": ("GET", "/gateway/v1/api-keys"),
    "gateway.keys_write": ("POST", "/gateway/v1/api-keys"),
}

KPI_READS = {"kpi.read", "kpi.query", "kpi.attribution", "kpi.cohorts", "kpi.anomalies", "kpi.journey"}
READS = {"budget.read", "workflow.read", "registry.read"} | KPI_READS
SERVICE_ROUTES = {k for k in ROUTES if not k.startswith("gateway.")}
TASKS_AND_INSTANCES = {"workflow.start", "workflow.cancel", "workflow.resubmit", "workflow.task"}

EXPECTED = {
    "admin": set(ROUTES),
    "mops": SERVICE_ROUTES,
    "finance": READS
    | {k for k in ROUTES if k.startswith("budget.")}
    | TASKS_AND_INSTANCES
    | {"registry.contract", "registry.contract_edit", "registry.fx"},
    "approver": READS | TASKS_AND_INSTANCES,
    "marketer": READS | {"budget.commit", "budget.actual", "workflow.start", "workflow.cancel", "workflow.resubmit"},
    "analyst": READS,
    "partner": {
        "budget.read",
        "registry.read",
        "budget.erp",
        "kpi.measure",
        "kpi.touch",
        "kpi.convert",
        "kpi.lifecycle",  # a CRM feeding stage changes; never dismissing anomalies or running the check
        "registry.usage",
    }
    | KPI_READS,
}


@pytest.mark.db
async def test_every_role_over_every_route_class(gw, token):
    key_body = {"name": "matrix", "roles": ["partner"]}
    mismatches = []
    for role, allowed in EXPECTED.items():
        headers = bearer(token(role, sub=f"{role}-user"))
        for label, (method, path) in ROUTES.items():
            r = await gw.request(method, path, headers=headers, json=key_body if method != "GET" else None)
            if label in allowed:
                ok = r.status_code in (200, 201)
                if ok and not label.startswith("gateway."):
                    ok = r.json()["principal"]["roles"] == [role]
            else:
                ok = r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
            if not ok:
                mismatches.append((role, label, r.status_code))
    assert mismatches == []


@pytest.mark.db
async def test_no_role_at_all_is_denied(gw, token):
    body = assert_problem(await gw.get("/budget/v1/plans", headers=bearer(token())), 403)
    assert "none" in body["detail"]


def test_the_shipped_policy_loads_and_analyst_can_never_write():
    policy = Policy.load("gateway/policy.yaml")
    for service in ("budget", "workflow", "kpi", "registry", "notify"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert not policy.allows({"analyst"}, service, method, "/v1/anything")
    # Only notify's signed links are public, and only GET and POST on them.
    assert policy.is_public("notify", "GET", "/v1/actions/tok") and policy.is_public(
        "notify", "POST", "/v1/unsubscribe/t"
    )
    assert not policy.is_public("notify", "GET", "/v1/inbox") and not policy.is_public(
        "notify", "DELETE", "/v1/actions/t"
    )
    assert not policy.is_public("workflow", "GET", "/v1/actions/tok")
    with pytest.raises(PolicyError, match="public"):
        Policy.from_dict({"roles": {}, "public": [{"service": "gateway", "methods": ["GET"], "paths": ["/v1/keys"]}]})
    with pytest.raises(PolicyError, match="read-only"):
        Policy.from_dict({"roles": {"analyst": [{"service": "kpi", "methods": ["POST"], "paths": ["/v1/x"]}]}})
    # A read-only POST (KPI's semantic query) is decided as a GET of its path: the analyst may send it.
    assert policy.allows({"analyst"}, "kpi", "POST", "/v1/query")
    assert not policy.allows({"analyst"}, "kpi", "POST", "/v1/query/x") and not policy.allows(
        set(), "kpi", "POST", "/v1/query"
    )
    with pytest.raises(PolicyError, match="read-only"):
        Policy.from_dict(
            {
                "roles": {
                    "partner": {"read_only": True, "rules": [{"service": "kpi", "methods": ["*"], "paths": ["/**"]}]}
                }
            }
        )


@pytest.mark.parametrize(
    "doc, match",
    [
        ({"roles": {"wizard": []}}, "unknown role"),
        ({"roles": {"mops": [{"service": "billing", "methods": ["GET"], "paths": ["/**"]}]}}, "unknown service"),
        ({"roles": {"mops": [{"service": "kpi", "methods": ["FETCH"], "paths": ["/**"]}]}}, "unknown method"),
        ({"roles": {"mops": [{"service": "kpi", "methods": ["GET"], "paths": ["v1/x"]}]}}, "must start"),
        ({"rules": []}, "'roles'"),
    ],
)
def test_malformed_policies_are_refused(doc, match):
    with pytest.raises(PolicyError, match=match):
        Policy.from_dict(doc)


def test_path_patterns():
    policy = Policy.from_dict(
        {
            "roles": {
                "mops": [{"service": "budget", "methods": ["POST"], "paths": ["/v1/tasks/*/approve", "/v1/erp/**"]}]
            }
        }
    )
    allows = lambda path: policy.allows({"mops"}, "budget", "POST", path)  # noqa: E731
    assert allows("/v1/tasks/t1/approve") and allows("/v1/tasks/t1/approve/")
    assert not allows("/v1/tasks/t1/x/approve") and not allows("/v1/tasks//approve")
    assert allows("/v1/erp") and allows("/v1/erp/a/b/c") and not allows("/v1/erpx")
    assert not policy.allows({"mops"}, "budget", "GET", "/v1/erp/a")
    assert not policy.allows({"finance"}, "budget", "POST", "/v1/erp/a")  # a role without rules: denied


@pytest.mark.db
async def test_policy_path_is_configurable(new_db, net, token, tmp_path):
    from tests.gateway.conftest import gateway_settings, running_gateway

    custom = tmp_path / "policy.yaml"
    custom.write_text("roles:\n  analyst:\n    - {service: kpi, methods: [GET], paths: ['/v1/metrics/**']}\n")
    async with running_gateway(gateway_settings(await new_db("gateway"), policy_path=str(custom))) as gw:
        assert (await gw.get("/kpi/v1/metrics/cpl", headers=bearer(token("analyst")))).status_code == 200
        assert_problem(await gw.get("/kpi/v1/targets", headers=bearer(token("analyst"))), 403)
        assert_problem(await gw.get("/budget/v1/plans", headers=bearer(token("admin"))), 403)


SUPPLIER_ROUTES = {
    "mine": ("GET", "/workflow/v1/deliverables"),
    "one": ("GET", "/workflow/v1/deliverables/d1"),
    "accept": ("POST", "/workflow/v1/deliverables/d1/accept"),
    "deliver": ("POST", "/workflow/v1/deliverables/d1/deliver"),
    "ask": ("POST", "/workflow/v1/deliverables/d1/questions"),
    "suppliers": ("GET", "/workflow/v1/suppliers"),
    "upload": ("POST", "/workflow/v1/deliverables/d1/attachments"),
    "download": ("GET", "/workflow/v1/deliverables/d1/attachments/a1"),
    "timeline": ("GET", "/workflow/v1/calendar"),
}


@pytest.mark.db
async def test_a_supplier_reaches_only_its_deliverables_routes_and_needs_its_scope(gw, token):
    acme = bearer(token("supplier", sub="acme-key", scopes=("supplier:acme",)))
    for label, (method, path) in SUPPLIER_ROUTES.items():
        r = await gw.request(method, path, headers=acme, json={} if method == "POST" else None)
        assert r.status_code in (200, 201), (label, r.status_code)
        assert r.json()["principal"]["scopes"] == ["supplier:acme"]
    # No budget route at all, nor any other route of any service; approving its own work neither.
    denied = [
        *ROUTES.values(),
        ("POST", "/workflow/v1/deliverables/d1/approve"),
        ("GET", "/workflow/v1/requests"),
        ("GET", "/workflow/v1/calendars"),
        ("GET", "/workflow/v1/calendar/x"),
        ("GET", "/budget/v1/campaigns"),
    ]
    for method, path in denied:
        r = await gw.request(method, path, headers=acme, json={} if method != "GET" else None)
        assert r.status_code == 403, (method, path, r.status_code)
    # Another role beside `supplier` widens nothing: the supplier's rules alone apply.
    both = bearer(token("supplier", "mops", sub="acme-mops", scopes=("supplier:acme",)))
    assert (await gw.get("/budget/v1/plans", headers=both)).status_code == 403
    # Without a supplier:<id> scope a supplier reaches nothing, not even its routes.
    bare = bearer(token("supplier", sub="bare", scopes=("region:EMEA",)))
    body = assert_problem(await gw.get("/workflow/v1/deliverables", headers=bare), 403)
    assert "supplier:<id>" in body["detail"]


def test_a_confined_role_must_name_a_dimension():
    with pytest.raises(PolicyError, match="dimension"):
        Policy.from_dict({"roles": {"supplier": {"scope": "", "rules": []}}})


def _roles_of(check: object) -> frozenset[str]:
    """The roles a service's `require_roles(...)` dependency lets through (admin included)."""
    cells = [c.cell_contents for c in getattr(check, "__closure__", None) or ()]
    found = [c for c in cells if isinstance(c, set)]
    assert len(found) == 1, "require_roles keeps its roles in one closed-over set"
    return frozenset(found[0])


def test_a_restricted_path_is_reached_only_through_its_roles_as_the_service_checks():
    from services.kpi.api import quality_readers

    policy = Policy.load("gateway/policy.yaml")
    readers = _roles_of(quality_readers)
    assert readers == {"admin", "mops", "analyst"}
    for role in ROLES:
        # The gateway answers as the KPI service would: finance's `kpi read /**` does not reach it.
        assert policy.allows({role}, "kpi", "GET", "/v1/quality") == (role in readers), role
        assert policy.allows({role}, "kpi", "GET", "/v1/quality/") == (role in readers), role
    # Everything else the broad rule gives is untouched; a second role with access opens it.
    assert policy.allows({"finance"}, "kpi", "GET", "/v1/scorecard")
    assert policy.allows({"finance", "analyst"}, "kpi", "GET", "/v1/quality")
    assert not policy.allows({"finance"}, "kpi", "HEAD", "/v1/quality")


def test_a_restricted_entry_must_name_known_roles():
    rule = {"service": "kpi", "methods": ["GET"], "paths": ["/v1/x"]}
    for roles in (None, [], ["wizard"], "mops"):
        with pytest.raises(PolicyError, match="roles"):
            Policy.from_dict({"roles": {}, "restricted": [{**rule, "roles": roles}]})
    doc = {"roles": {"finance": [{"service": "kpi", "methods": ["read"], "paths": ["/**"]}]}}
    policy = Policy.from_dict({**doc, "restricted": [{**rule, "roles": ["mops"]}]})
    assert not policy.allows({"finance"}, "kpi", "GET", "/v1/x")
    assert not policy.allows({"mops"}, "kpi", "GET", "/v1/x")  # a restriction never grants
    assert policy.allows({"finance"}, "kpi", "HEAD", "/v1/x") and policy.allows({"finance"}, "kpi", "GET", "/v1/y")


@pytest.mark.db
async def test_a_supplier_sees_its_own_deliverables_and_no_campaign_in_the_timeline_through_the_gateway(
    new_db, net, token
):
    """The real workflow service behind the real gateway: GET /workflow/v1/calendar passes the supplier's
    rules, and the service answers with that supplier's deliverables only, no other supplier's, no campaign."""
    import uuid

    from pitcrew.migrations import upgrade_async
    from services.workflow.main import create_app as create_workflow
    from tests.gateway.conftest import gateway_settings, running_gateway
    from tests.gateway.network import ServiceHost
    from tests.workflow.conftest import MARKETER, Harness, settings_for
    from tests.workflow.test_campaigns import apply, campaign_event
    from tests.workflow.test_deliverables import a_request
    from tests.workflow.test_suppliers import two_suppliers

    url = await new_db("wf")
    await upgrade_async("workflow", url)
    app = create_workflow(settings_for(url))
    async with app.router.lifespan_context(app):
        wf = Harness(app, url)
        acme, other = await two_suppliers(wf)
        req = await a_request(wf)
        path = f"/v1/requests/{req['id']}/deliverables"
        mine = await wf.ok(
            "POST", path, MARKETER, {"name": "Poster", "supplier_id": acme["id"], "due_date": "2027-03-10"}, 201
        )
        theirs = await wf.ok(
            "POST", path, MARKETER, {"name": "Flyer", "supplier_id": other["id"], "due_date": "2027-03-11"}, 201
        )
        await wf.ok("POST", path, MARKETER, {"name": "Copy", "owner": "olga", "due_date": "2027-03-12"}, 201)
        await apply(wf, campaign_event(str(uuid.uuid4()), starts_on="2027-03-01", ends_on="2027-03-31"))
        host = ServiceHost("workflow-real", app, {})
        await host.start()
        try:
            settings = gateway_settings(await new_db("gateway"), workflow_url=host.url)
            async with running_gateway(settings) as gw:
                window = {"from": "2027-03-01", "to": "2027-03-31"}

                async def timeline(*roles: str, sub: str, scopes: tuple[str, ...]) -> list[tuple[str, str]]:
                    headers = bearer(token(*roles, sub=sub, scopes=scopes))
                    r = await gw.get("/workflow/v1/calendar", params=window, headers=headers)
                    assert r.status_code == 200, r.text
                    return [(e["kind"], e["title"]) for e in r.json()["items"]]

                everything = await timeline("mops", sub="mo", scopes=())
                assert everything == [
                    ("campaign", "Spring launch"),
                    ("deliverable", "Poster"),
                    ("deliverable", "Flyer"),
                    ("deliverable", "Copy"),
                ]
                acme_scope = (f"supplier:{acme['id']}",)
                assert await timeline("supplier", sub="acme-key", scopes=acme_scope) == [("deliverable", "Poster")]
                other_scope = (f"supplier:{other['id']}",)
                assert await timeline("supplier", sub="other-key", scopes=other_scope) == [("deliverable", "Flyer")]
                # Another role beside `supplier` widens nothing, in the gateway or in the service.
                both = await timeline("supplier", "mops", sub="acme-mops", scopes=acme_scope)
                assert both == [("deliverable", "Poster")]
                # Guessing another supplier's deliverable by id is a 404; without a supplier scope, a 403.
                acme_key = bearer(token("supplier", sub="acme-key", scopes=acme_scope))
                assert (await gw.get(f"/workflow/v1/deliverables/{mine['id']}", headers=acme_key)).status_code == 200
                assert_problem(await gw.get(f"/workflow/v1/deliverables/{theirs['id']}", headers=acme_key), 404)
                bare = bearer(token("supplier", sub="bare", scopes=("region:EMEA",)))
                assert_problem(await gw.get("/workflow/v1/calendar", params=window, headers=bare), 403)
        finally:
            await host.stop()
            await wf.client.aclose()
