"""The carrier account admin never shows the API key and keeps it unless it is typed again."""
from django.urls import reverse


def test_api_key_is_never_rendered_by_admin(root_client, provider_a):
    pages = [
        reverse("admin:rateplans_serviceprovider_changelist"),
        reverse("admin:rateplans_serviceprovider_change", args=[provider_a.pk]),
    ]
    for url in pages:
        response = root_client.get(url)
        assert response.status_code == 200
        assert provider_a.api_key not in response.content.decode(), url



def test_blank_api_key_in_admin_keeps_the_stored_key(root_client, provider_a):
    url = reverse("admin:rateplans_serviceprovider_change", args=[provider_a.pk])
    form = root_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"api_key": "", "auto_apply": "", "active": "on"})
    response = root_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    provider_a.refresh_from_db()
    assert provider_a.api_key == "sk-alice-very-secret"



def test_admin_refuses_to_move_the_account_without_the_api_key(root_client, provider_a):
    url = reverse("admin:rateplans_serviceprovider_change", args=[provider_a.pk])
    form = root_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"api_key": "", "auto_apply": "", "active": "on", "api_base_url": "https://collector.example.net"})
    response = root_client.post(url, data)
    assert response.status_code == 200  # the form comes back with an error
    assert "needs the API key again" in response.content.decode()
    provider_a.refresh_from_db()
    assert provider_a.api_base_url == "http://127.0.0.1:8765"



def test_admin_says_at_save_time_that_telegence_cannot_be_optimized(root_client, provider_a):
    url = reverse("admin:rateplans_serviceprovider_change", args=[provider_a.pk])
    form = root_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"api_key": "sk-typed-again", "auto_apply": "", "active": "on", "integration": "Telegence"})
    response = root_client.post(url, data)
    assert response.status_code == 200  # the form comes back with the error
    assert "Telegence accounts cannot be synced by carrieropt yet, so optimization is not available" in response.content.decode()
    provider_a.refresh_from_db()
    assert provider_a.integration == "Jasper"
