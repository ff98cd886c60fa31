"""Named fixtures shared by every test: alice and bob, each with a tenant and a carrier account; clients logged
in as them; tasks run inline; the demo fleet; the carrier simulator (carriers.simulator.fixtures)."""
import pytest

from tests import factories
from tests.factories_results import session_with_results, token_for
from tests.report_storage import use_report_folder

pytest_plugins = ["carriers.simulator.fixtures"]  # carrier_simulator, carrier_simulator_factory


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Named users get hashed passwords; PBKDF2 would cost ~0.2 s per user per test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db):
    """Alice operates tenant A: she may apply recommendations (push them to the carrier) and pin SIMs."""
    from django.contrib.auth.models import Permission

    user = factories.UserFactory(username="alice")
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["apply_recommendations", "add_devicepin", "delete_devicepin"]))
    return user


@pytest.fixture
def reader(db, tenant_a):
    """A member of tenant A who may look but not apply."""
    user = factories.UserFactory(username="reader")
    tenant_a.users.add(user)
    return user


@pytest.fixture
def bob(db):
    return factories.UserFactory(username="bob")


@pytest.fixture
def tenant_a(alice):
    tenant = factories.TenantFactory(name="Alice Logistics", slug="alice-logistics")
    tenant.users.add(alice)
    return tenant


@pytest.fixture
def tenant_b(bob):
    tenant = factories.TenantFactory(name="Bob Metering", slug="bob-metering")
    tenant.users.add(bob)
    return tenant


@pytest.fixture
def provider_a(tenant_a):
    return factories.ServiceProviderFactory(tenant=tenant_a, name="Alice Jasper", api_key="sk-alice-very-secret")


@pytest.fixture
def provider_b(tenant_b):
    return factories.ServiceProviderFactory(tenant=tenant_b, name="Bob POD19", integration="POD19", api_key="sk-bob-very-secret")


@pytest.fixture
def period_a(provider_a):
    return factories.BillingPeriodFactory(provider=provider_a)


@pytest.fixture
def tenant(db):
    """A tenant of nobody in particular, for accounts a test points at the carrier simulator."""
    return factories.TenantFactory(name="Sync Co", slug="sync-co")


@pytest.fixture
def api(client, alice, tenant_a):
    """The REST API as alice (token authentication)."""
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token_for(alice)}"
    return client


@pytest.fixture
def list_queries(api):
    """list_queries(url, **params) -> (queries, count): one GET of a list endpoint as alice, every row on one page,
    its database queries counted (token lookup included)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def measure(url, **params):
        with CaptureQueriesContext(connection) as queries:
            response = api.get(url, {"page_size": 1000, **params})
        assert response.status_code == 200, response.content
        return len(queries.captured_queries), response.json()["count"]
    return measure


@pytest.fixture
def alice_client(client, alice, tenant_a):
    """The browser pages as alice (login session)."""
    client.force_login(alice)
    return client


@pytest.fixture
def root_client(client, db):
    """The admin as a superuser."""
    client.force_login(factories.UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def inline_tasks(monkeypatch):
    """django-q2 runs every task inline, at enqueue time (enqueue_on_commit: when the transaction commits)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def demo(request, db):
    """The demo tenant (devices.demo.demo_seed); size and seed from `@pytest.mark.demo(devices=, seed=)`."""
    from devices.demo import demo_seed

    marker = request.node.get_closest_marker("demo")
    return demo_seed(**{"devices": 120, "seed": 4, **(marker.kwargs if marker else {})})


@pytest.fixture
def completed_session(settings, tmp_path):
    """completed_session(provider=, groups=, sims_per_group=, seed=, notes=, **session_fields): a session the real
    pipeline ran on a small seeded fleet (tests.factories_results.session_with_results), its report under tmp_path."""
    use_report_folder(settings, tmp_path / "reports")
    return session_with_results


def pytest_collection_modifyitems(config, items):
    from django.db import connection

    if connection.vendor != "postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://…)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)
