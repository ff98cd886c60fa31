"""Every model of ours has an admin whose pages render."""
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from tests import factories

OUR_APPS = {"carrieropt", "rateplans", "devices", "optimizer", "optsessions"}


def test_every_model_of_ours_has_an_admin():
    missing = [m.__name__ for m in apps.get_models() if m._meta.app_label in OUR_APPS and m not in admin.site._registry]
    assert missing == []


def test_changelists_and_add_pages_render(root_client, provider_a, period_a):
    factories.DeviceFactory(provider=provider_a)
    for model in admin.site._registry:
        if model._meta.app_label not in OUR_APPS:
            continue
        meta = model._meta
        response = root_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert response.status_code == 200, meta.label








