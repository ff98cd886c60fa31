"""Admin pages render for every model and never show a carrier API key."""
import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from tests import factories

OUR_APPS = {"carrieropt", "rateplans", "devices", "optimizer", "optsessions"}


@pytest.fixture
def admin_client_(client, db):
    user = factories.UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def test_every_model_of_ours_has_an_admin():
    missing = [m.__name__ for m in apps.get_models() if m._meta.app_label in OUR_APPS and m not in admin.site._registry]
    assert missing == []


def test_changelists_and_add_pages_render(admin_client_, provider_a, period_a):
    factories.DeviceFactory(provider=provider_a)
    for model in admin.site._registry:
        if model._meta.app_label not in OUR_APPS:
            continue
        meta = model._meta
        response = admin_client_.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert response.status_code == 200, meta.label


def test_device_changelist_searches_by_iccid(admin_client_, provider_a):
    factories.DeviceFactory(provider=provider_a, iccid="8901260000000000042")
    factories.DeviceFactory(provider=provider_a, iccid="8901269999999999999")
    url = reverse("admin:devices_device_changelist")
    body = admin_client_.get(url, {"q": "8901260000000000042"}).content.decode()
    assert "8901260000000000042" in body and "8901269999999999999" not in body


def test_api_key_is_never_rendered_by_admin(admin_client_, provider_a):
    pages = [
        reverse("admin:rateplans_serviceprovider_changelist"),
        reverse("admin:rateplans_serviceprovider_change", args=[provider_a.pk]),
    ]
    for url in pages:
        response = admin_client_.get(url)
        assert response.status_code == 200
        assert provider_a.api_key not in response.content.decode(), url


def test_blank_api_key_in_admin_keeps_the_stored_key(admin_client_, provider_a):
    url = reverse("admin:rateplans_serviceprovider_change", args=[provider_a.pk])
    form = admin_client_.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"api_key": "", "auto_apply": "", "active": "on"})
    response = admin_client_.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    provider_a.refresh_from_db()
    assert provider_a.api_key == "sk-alice-very-secret"


def test_admin_refuses_to_move_the_account_without_the_api_key(admin_client_, provider_a):
    url = reverse("admin:rateplans_serviceprovider_change", args=[provider_a.pk])
    form = admin_client_.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"api_key": "", "auto_apply": "", "active": "on", "api_base_url": "https://collector.example.net"})
    response = admin_client_.post(url, data)
    assert response.status_code == 200  # the form comes back with an error
    assert "needs the API key again" in response.content.decode()
    provider_a.refresh_from_db()
    assert provider_a.api_base_url == "http://127.0.0.1:8765"
