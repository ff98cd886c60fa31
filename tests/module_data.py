"""Data built once for a whole test module: a module-scoped fixture opens one transaction, builds in it, and
rolls it back after the module's last test. Each test (`db`) runs in a savepoint of it, rolled back after the test,
so the tests see the same rows and none sees another's changes. Not for transactional tests (they commit)."""
from contextlib import contextmanager

from django.conf import settings
from django.db import transaction
from django.test import override_settings

from tests.report_storage import folder_storage


@contextmanager
def module_transaction(django_db_blocker, reports_folder):
    """Database access and the test settings tests/conftest.py gives each test (fast password hashing, reports
    under `reports_folder`) while the module's data is built; everything rolled back at the end."""
    test_settings = override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
                                      STORAGES={**settings.STORAGES, "reports": folder_storage(reports_folder)})
    with django_db_blocker.unblock(), test_settings, transaction.atomic():
        yield
        transaction.set_rollback(True)


def alice_with_tenant_a():
    """alice (may apply recommendations) and her tenant A with its carrier account, as tests/conftest.py makes them."""
    from django.contrib.auth.models import Permission

    from tests import factories

    alice = factories.UserFactory(username="alice")
    alice.user_permissions.add(Permission.objects.get(codename="apply_recommendations"))
    tenant_a = factories.TenantFactory(name="Alice Logistics", slug="alice-logistics")
    tenant_a.users.add(alice)
    provider_a = factories.ServiceProviderFactory(tenant=tenant_a, name="Alice Jasper", api_key="sk-alice-very-secret")
    return alice, tenant_a, provider_a
