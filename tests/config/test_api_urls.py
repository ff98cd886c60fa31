"""Every API endpoint: anonymous callers are refused, another tenant's ids answer 404, lists hold no foreign row."""
import pytest
from django.urls import URLPattern, reverse

from config import api_urls
from devices.models import Customer, Device, DevicePin
from pushes.models import RatePlanPush
from tests.factories_results import ProgressEventFactory
from tests.module_data import alice_with_tenant_a, module_transaction
from tests.report_storage import use_report_folder

# Routes with an integer id: which object of a tenant ("side" of the world fixture) the id names.
# Routes with a session GUID need no entry: they all get the side's session.
PK_ROUTES = {
    "provider-detail": "provider",
    "rate-plan-detail": "rate_plan",
    "communication-plan-detail": "comm",
    "device-detail": "device",
    "push-detail": "push",
    "pin-detail": "pin",
    "customer-detail": "customer",
}
LIST_ROUTES = ["provider-list", "rate-plan-list", "communication-plan-list", "device-list", "session-list",
               "pin-list", "customer-list"]


def _routes():
    """(name, path parameters, methods) of every named API route, read from the URL map so none is missed."""
    for pattern in api_urls.urlpatterns:
        if isinstance(pattern, URLPattern) and pattern.name:
            view = pattern.callback.cls
            methods = [m for m in ("get", "post", "patch", "put", "delete") if hasattr(view, m)]
            yield pattern.name, sorted(pattern.pattern.converters), methods


ALL_ROUTES = list(_routes())
# Routes this file knows how to point at a tenant's object; test_every_route_is_covered flags the rest.
KNOWN = {name for name, params, _ in ALL_ROUTES if params == ["guid"] or name in PK_ROUTES or name in LIST_ROUTES}
OBJECT_ROUTES = sorted(name for name, params, _ in ALL_ROUTES if params and name in KNOWN)
METHODS = {name: methods for name, _, methods in ALL_ROUTES if name in KNOWN}


def kwargs_for(name: str, side: dict) -> dict:
    params = dict((n, p) for n, p, _ in ALL_ROUTES)[name]
    if params == ["guid"]:
        return {"guid": side["session"].guid}
    if params == ["pk"]:
        return {"pk": side[PK_ROUTES[name]].pk}
    return {}


def _side(provider, completed_session):
    session = completed_session(provider=provider, groups=1, sims_per_group=2)
    ProgressEventFactory(session=session, progress=100)
    run = session.run
    assignment = run.assignments.first()
    push = RatePlanPush.objects.create(
        provider=provider, session=session, status="no_go", decision="no_go",
        period_ends_at=session.billing_period.ends_at(), minutes_left=1, minutes_needed=2, rate_per_minute=60)
    pin = DevicePin.objects.create(device=assignment.device, reason="customer contract")
    customer = Customer.objects.create(tenant=provider.tenant, name=f"Customer of {provider.name}")
    Device.objects.filter(pk=assignment.device_id).update(customer=customer)
    return {"customer": customer, "provider": provider, "session": session, "rate_plan": assignment.recommended_plan,
            "comm": run.comm_groups.get().communication_plans.get(), "device": assignment.device, "push": push,
            "pin": pin}


@pytest.fixture(scope="module")
def _world(django_db_setup, django_db_blocker, tmp_path_factory):
    """Two tenants, each with a session the real pipeline ran, built once for this module (tests.module_data)."""
    from tests import factories
    from tests.factories_results import session_with_results

    with module_transaction(django_db_blocker, tmp_path_factory.mktemp("reports")):
        alice, tenant_a, provider_a = alice_with_tenant_a()
        bob = factories.UserFactory(username="bob")
        tenant_b = factories.TenantFactory(name="Bob Metering", slug="bob-metering")
        tenant_b.users.add(bob)
        provider_b = factories.ServiceProviderFactory(tenant=tenant_b, name="Bob POD19", integration="POD19",
                                                      api_key="sk-bob-very-secret")
        yield {"alice": alice, "tenant_a": tenant_a,
               "world": {"a": _side(provider_a, session_with_results), "b": _side(provider_b, session_with_results)}}


# The users and tenants of the shared world stand in for tests/conftest.py's (which would make them again).
@pytest.fixture
def world(_world, db):
    return _world["world"]


@pytest.fixture
def alice(_world, db):
    return _world["alice"]


@pytest.fixture
def tenant_a(_world, db):
    return _world["tenant_a"]


def test_every_route_is_covered_by_these_tests():
    """A new endpoint must say here which tenant-owned object its id names (or be a list)."""
    for name, params, _ in ALL_ROUTES:
        if params == ["pk"]:
            assert name in PK_ROUTES, f"add {name!r} to PK_ROUTES in tests/config/test_api_urls.py"
        elif not params:
            assert name in LIST_ROUTES, f"add {name!r} to LIST_ROUTES in tests/config/test_api_urls.py"
        else:
            assert params == ["guid"], f"{name}: no rule here for path parameters {params}"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_anonymous_is_refused_on_every_operation(client, world, name):
    url = reverse(f"api:{name}", kwargs=kwargs_for(name, world["b"]))
    for method in METHODS[name]:
        response = getattr(client, method)(url, {}, content_type="application/json")
        assert response.status_code == 401, (method, url, response.status_code)
        assert response.json()["error"]["code"] == "not_authenticated"
        assert response["WWW-Authenticate"].startswith("Token")


def test_a_wrong_token_is_refused(client, world):
    response = client.get(reverse("api:session-list"), HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("name", OBJECT_ROUTES)
def test_another_tenants_ids_answer_404(api, world, name):
    url = reverse(f"api:{name}", kwargs=kwargs_for(name, world["b"]))
    for method in METHODS[name]:
        response = getattr(api, method)(url, {}, content_type="application/json")
        assert response.status_code == 404, (method, url, response.content)
        assert response.json()["error"]["code"] == "not_found"
    # Nothing about B's objects changed through A's attempts.
    world["b"]["session"].refresh_from_db()
    assert world["b"]["session"].status == "succeeded"


@pytest.mark.parametrize("name", [n for n in OBJECT_ROUTES if "get" in METHODS[n]])
def test_own_ids_are_found(api, world, name, settings, tmp_path):
    """The 404s above come from the tenant scope, not from a broken route."""
    use_report_folder(settings, tmp_path)
    (tmp_path / "device_assignments_own.xlsx").write_bytes(b"PK")
    world["a"]["session"].report_path = "device_assignments_own.xlsx"
    world["a"]["session"].save()
    response = api.get(reverse(f"api:{name}", kwargs=kwargs_for(name, world["a"])))
    assert response.status_code == 200, response.content


def test_cancelling_an_own_ended_session_is_a_conflict_not_a_404(api, world):
    response = api.post(reverse("api:session-cancel", kwargs=kwargs_for("session-cancel", world["a"])))
    assert response.status_code == 409


@pytest.mark.parametrize("name", LIST_ROUTES)
def test_lists_hold_only_own_rows(api, world, name):
    body = api.get(reverse(f"api:{name}"), {"page_size": 1000}).json()
    rows = body["results"]
    assert rows, "alice must see her own rows"
    own_provider = world["a"]["provider"].pk
    for row in rows:
        if name == "customer-list":  # a customer is the tenant's, not one account's
            assert row["tenant"] == world["a"]["provider"].tenant_id, row
            continue
        provider = row["id"] if name == "provider-list" else row["provider"]
        assert provider == own_provider, row


@pytest.mark.parametrize("name", ["session-events", "session-groups", "session-assignments"])
def test_nested_lists_of_own_session_hold_only_its_rows(api, world, name):
    rows = api.get(reverse(f"api:{name}", kwargs={"guid": world["a"]["session"].guid})).json()["results"]
    assert rows
    foreign_iccids = {world["b"]["device"].iccid}
    assert not foreign_iccids & {r.get("iccid") for r in rows}


def test_filtering_by_a_foreign_provider_gives_nothing(api, world):
    b = world["b"]["provider"].pk
    for name in ["rate-plan-list", "communication-plan-list", "device-list", "session-list"]:
        body = api.get(reverse(f"api:{name}"), {"provider": b}).json()
        assert body["count"] == 0 and body["results"] == [], name


def test_unknown_api_path_is_a_json_404(api):
    response = api.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_schema_and_docs_are_public(client, db):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/health/").json() == {"status": "ok"}


def _paginated_paths() -> list[str]:
    """The paths of every GET the schema says takes page_size (read from the schema, so none is missed)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted(path for path, item in schema["paths"].items()
                  if any(p["name"] == "page_size" for p in item.get("get", {}).get("parameters", [])))


PAGINATED = _paginated_paths()


def test_every_list_is_paginated():
    assert len(PAGINATED) >= 10, PAGINATED


@pytest.mark.parametrize("path", PAGINATED)
def test_an_invalid_page_size_is_a_400_naming_it_on_every_list(api, world, path):
    url = path.replace("{guid}", str(world["a"]["session"].guid))
    for bad in ["null", "", "0", "-1", "1001", "1.5", "abc", "1e3", " 5"]:
        response = api.get(url, {"page_size": bad})
        assert response.status_code == 400, (url, bad, response.content)
        error = response.json()["error"]
        assert error["code"] == "invalid" and list(error["fields"]) == ["page_size"], (url, bad, error)
    for good in ["1", "1000"]:
        response = api.get(url, {"page_size": good})
        assert response.status_code == 200, (url, good, response.content)
        assert len(response.json()["results"]) <= int(good)
