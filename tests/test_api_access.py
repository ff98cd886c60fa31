"""Every API endpoint: anonymous callers are refused, another tenant's ids answer 404, lists hold no foreign row."""
import pytest
from django.urls import URLPattern, reverse

from carrieropt import api_urls
from tests.factories_results import ProgressEventFactory, session_with_results, token_for

# url name -> the path kwargs naming one tenant's object (a "side" of the world fixture).
OBJECT_ROUTES = {
    "provider-detail": lambda side: {"pk": side["provider"].pk},
    "rate-plan-detail": lambda side: {"pk": side["rate_plan"].pk},
    "communication-plan-detail": lambda side: {"pk": side["comm"].pk},
    "device-detail": lambda side: {"pk": side["device"].pk},
    "session-detail": lambda side: {"guid": side["session"].guid},
    "session-cancel": lambda side: {"guid": side["session"].guid},
    "session-events": lambda side: {"guid": side["session"].guid},
    "session-groups": lambda side: {"guid": side["session"].guid},
    "session-assignments": lambda side: {"guid": side["session"].guid},
    "session-report": lambda side: {"guid": side["session"].guid},
}
LIST_ROUTES = ["provider-list", "rate-plan-list", "communication-plan-list", "device-list", "session-list"]


def _routes():
    """(name, methods) of every named API route, read from the URL map so a new endpoint cannot be missed."""
    for pattern in api_urls.urlpatterns:
        if isinstance(pattern, URLPattern) and pattern.name:
            view = pattern.callback.cls
            yield pattern.name, [m for m in ("get", "post", "patch", "put", "delete") if hasattr(view, m)]


ALL_ROUTES = list(_routes())


def _side(provider):
    session = session_with_results(provider=provider, groups=1, sims_per_group=2)
    ProgressEventFactory(session=session, progress=100)
    instance = session.instances.get()
    assignment = instance.assignments.first()
    return {"provider": provider, "session": session, "rate_plan": assignment.recommended_plan,
            "comm": instance.comm_groups.get().communication_plans.get(), "device": assignment.device}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # alice and bob get hashed passwords; PBKDF2 would cost 0.2 s per user per test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(provider_a, provider_b, alice, bob):
    return {"a": _side(provider_a), "b": _side(provider_b)}


@pytest.fixture
def alice_api(client, alice):
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token_for(alice)}"
    return client


def test_every_route_is_covered_by_these_tests():
    names = {name for name, _ in ALL_ROUTES}
    assert names == set(OBJECT_ROUTES) | set(LIST_ROUTES)


@pytest.mark.parametrize(("name", "methods"), ALL_ROUTES, ids=[n for n, _ in ALL_ROUTES])
def test_anonymous_is_refused_on_every_operation(client, world, name, methods):
    kwargs = OBJECT_ROUTES[name](world["b"]) if name in OBJECT_ROUTES else {}
    url = reverse(f"api:{name}", kwargs=kwargs)
    for method in methods:
        response = getattr(client, method)(url, {}, content_type="application/json")
        assert response.status_code == 401, (method, url, response.status_code)
        assert response.json()["error"]["code"] == "not_authenticated"
        assert response["WWW-Authenticate"].startswith("Token")


def test_a_wrong_token_is_refused(client, world):
    response = client.get(reverse("api:session-list"), HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("name", sorted(OBJECT_ROUTES))
def test_another_tenants_ids_answer_404(alice_api, world, name):
    url = reverse(f"api:{name}", kwargs=OBJECT_ROUTES[name](world["b"]))
    methods = dict(ALL_ROUTES)[name]
    for method in methods:
        response = getattr(alice_api, method)(url, {}, content_type="application/json")
        assert response.status_code == 404, (method, url, response.content)
        assert response.json()["error"]["code"] == "not_found"
    # Nothing about B's objects changed through A's attempts.
    world["b"]["session"].refresh_from_db()
    assert world["b"]["session"].status == "succeeded"


@pytest.mark.parametrize("name", sorted(OBJECT_ROUTES))
def test_own_ids_are_found(alice_api, world, name, settings, tmp_path):
    """The 404s above come from the tenant scope, not from a broken route."""
    settings.REPORTS_DIR = tmp_path
    path = tmp_path / "device_assignments_own.xlsx"
    path.write_bytes(b"PK")
    world["a"]["session"].report_path = str(path)
    world["a"]["session"].save()
    url = reverse(f"api:{name}", kwargs=OBJECT_ROUTES[name](world["a"]))
    method = "post" if name == "session-cancel" else "get"
    response = getattr(alice_api, method)(url, {}, content_type="application/json")
    # Alice's session has ended, so cancelling it is a conflict, not a 404.
    assert response.status_code == (409 if name == "session-cancel" else 200), response.content


@pytest.mark.parametrize("name", LIST_ROUTES)
def test_lists_hold_only_own_rows(alice_api, world, name):
    body = alice_api.get(reverse(f"api:{name}"), {"page_size": 1000}).json()
    rows = body["results"]
    assert rows, "alice must see her own rows"
    own_provider = world["a"]["provider"].pk
    for row in rows:
        provider = row["id"] if name == "provider-list" else row["provider"]
        assert provider == own_provider, row


@pytest.mark.parametrize("name", ["session-events", "session-groups", "session-assignments"])
def test_nested_lists_of_own_session_hold_only_its_rows(alice_api, world, name):
    rows = alice_api.get(reverse(f"api:{name}", kwargs={"guid": world["a"]["session"].guid})).json()["results"]
    assert rows
    foreign_iccids = {world["b"]["device"].iccid}
    assert not foreign_iccids & {r.get("iccid") for r in rows}


def test_filtering_by_a_foreign_provider_gives_nothing(alice_api, world):
    b = world["b"]["provider"].pk
    for name in ["rate-plan-list", "communication-plan-list", "device-list", "session-list"]:
        body = alice_api.get(reverse(f"api:{name}"), {"provider": b}).json()
        assert body["count"] == 0 and body["results"] == [], name


def test_unknown_api_path_is_a_json_404(alice_api):
    response = alice_api.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_schema_and_docs_are_public(client, db):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/health/").json() == {"status": "ok"}
