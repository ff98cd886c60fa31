"""Carrier API keys are encrypted at rest (FIELD_ENCRYPTION_KEYS, Fernet), read back only when a sync needs them,
and an account whose key cannot be decrypted is named, in the admin, the API and the sync, without a crash."""
import io

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test import TestCase, override_settings
from django.urls import reverse

from carrieropt.fields import SecretUnreadable
from devices.services import device_sync
from devices.testing import fast_client, simulated_provider
from rateplans.models import ServiceProvider
from rateplans.services import provider_update

OLD_KEY, NEW_KEY, OTHER_KEY = (Fernet.generate_key().decode() for _ in range(3))


def stored(provider) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM rateplans_serviceprovider WHERE id = %s", [provider.pk])
        return cursor.fetchone()[0]


def test_the_database_holds_a_token_of_the_first_key_and_the_model_the_key(provider_a):
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY, NEW_KEY]):
        provider_update(provider=provider_a, api_key="sk-alice-very-secret")
        assert ServiceProvider.objects.get(pk=provider_a.pk).api_key == "sk-alice-very-secret"
    token = stored(provider_a)
    assert "sk-alice-very-secret" not in token
    assert Fernet(OLD_KEY).decrypt(token.encode()) == b"sk-alice-very-secret"


def test_a_database_dump_shows_no_key(provider_a, provider_b):
    out = io.StringIO()
    call_command("dumpdata", "rateplans.serviceprovider", stdout=out)
    dump = out.getvalue()
    assert '"api_key": "gAAAAA' in dump  # the token is kept, so nothing is lost
    assert "sk-alice-very-secret" not in dump and "sk-bob-very-secret" not in dump


def test_a_new_first_key_encrypts_and_the_old_one_still_decrypts(provider_a):
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]):
        provider_update(provider=provider_a, api_key="sk-typed-under-old")
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        assert ServiceProvider.objects.get(pk=provider_a.pk).api_key == "sk-typed-under-old"
        provider_update(provider=ServiceProvider.objects.get(pk=provider_a.pk), report_recipients="noc@example.com")
        # Saving other fields writes the stored token back untouched: no decryption needed to save.
        assert Fernet(OLD_KEY).decrypt(stored(provider_a).encode()) == b"sk-typed-under-old"
        provider_update(provider=ServiceProvider.objects.get(pk=provider_a.pk), api_key="sk-typed-under-new")
    assert Fernet(NEW_KEY).decrypt(stored(provider_a).encode()) == b"sk-typed-under-new"


def test_the_key_is_checked_when_typed_not_when_stored(provider_a):
    with pytest.raises(ValidationError) as exc:
        provider_update(provider=provider_a, api_key="k" * 301)
    assert "api_key" in exc.value.message_dict
    provider_a.refresh_from_db()
    assert provider_a.api_key == "sk-alice-very-secret"


@pytest.fixture
def unreadable(provider_a):
    """provider_a's key as a token of a key that is not configured."""
    ServiceProvider.objects.filter(pk=provider_a.pk).update(api_key="placeholder")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE rateplans_serviceprovider SET api_key = %s WHERE id = %s",
                       [Fernet(OTHER_KEY).encrypt(b"sk-lost").decode(), provider_a.pk])
    return ServiceProvider.objects.get(pk=provider_a.pk)


def test_an_unreadable_key_is_named_when_read(unreadable):
    assert unreadable.has_api_key
    with pytest.raises(SecretUnreadable) as exc:
        unreadable.api_key  # noqa: B018
    message = str(exc.value)
    assert f"service provider #{unreadable.pk} 'Alice Jasper (Jasper)'" in message
    assert "FIELD_ENCRYPTION_KEYS" in message and "enter the api_key again" in message
    assert exc.value.field == "api_key"


def test_an_account_with_an_unreadable_key_can_still_be_edited_and_given_a_new_key(unreadable):
    provider_update(provider=unreadable, report_recipients="noc@example.com")
    provider_update(provider=ServiceProvider.objects.get(pk=unreadable.pk), api_key="sk-entered-again")
    assert ServiceProvider.objects.get(pk=unreadable.pk).api_key == "sk-entered-again"


def test_the_api_lists_an_account_with_an_unreadable_key(api, unreadable):
    response = api.get(reverse("api:provider-detail", kwargs={"pk": unreadable.pk}))
    assert response.status_code == 200 and response.json()["has_api_key"] is True


def test_the_admin_opens_and_saves_an_account_with_an_unreadable_key(root_client, unreadable):
    token = stored(unreadable)
    url = reverse("admin:rateplans_serviceprovider_change", args=[unreadable.pk])
    assert root_client.get(reverse("admin:rateplans_serviceprovider_changelist")).status_code == 200
    form = root_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"api_key": "", "auto_apply": "", "active": "on", "report_recipients": "noc@example.com"})
    response = root_client.post(url, data)
    assert response.status_code == 302
    assert stored(unreadable) == token  # kept as it was, for the day its key is configured again
    data["api_key"] = "sk-entered-in-admin"
    assert root_client.post(url, data).status_code == 302
    assert ServiceProvider.objects.get(pk=unreadable.pk).api_key == "sk-entered-in-admin"


def test_a_sync_of_an_account_with_an_unreadable_key_fails_naming_it(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE rateplans_serviceprovider SET api_key = %s WHERE id = %s",
                       [Fernet(OTHER_KEY).encrypt(b"sk-lost").decode(), provider.pk])
    provider = ServiceProvider.objects.get(pk=provider.pk)
    with TestCase.captureOnCommitCallbacks(execute=True):
        run = device_sync(provider=provider)
    run.refresh_from_db()
    assert run.status == "failed" and run.calls == 0
    assert f"service provider #{provider.pk}" in run.error and "FIELD_ENCRYPTION_KEYS" in run.error


def test_the_sync_reads_the_decrypted_key(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    with fast_client(ServiceProvider.objects.get(pk=provider.pk)) as client, \
            TestCase.captureOnCommitCallbacks(execute=True):
        run = device_sync(provider=provider, client=client)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
