"""Named fixtures shared by every test: alice and bob, each with a tenant and a carrier account."""
import pytest

from tests import factories


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Named users get hashed passwords; PBKDF2 would cost ~0.2 s per user per test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db):
    return factories.UserFactory(username="alice")


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


def pytest_collection_modifyitems(config, items):
    from django.db import connection

    if connection.vendor != "postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://…)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)
