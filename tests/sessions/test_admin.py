"""The sessions admin: start a session for selected carrier accounts (the refusal shown)."""

from django.urls import reverse

from sessions.models import OptimizationSession


def test_admin_action_starts_a_session_and_reports_the_refusal(root_client, provider_a):
    client = root_client
    url = reverse("admin:rateplans_serviceprovider_changelist")
    # The options page comes first (tests/sessions/test_options.py); "start" submits it with the accounts' defaults.
    data = {"action": "start_optimization_session", "_selected_action": [provider_a.pk], "start": "Start",
            "sync_devices": "on"}
    response = client.post(url, data, follow=True)
    session = OptimizationSession.objects.get(provider=provider_a)
    assert session.trigger == "admin"
    assert f"started optimization session {session.guid}" in response.content.decode()
    response = client.post(url, data, follow=True)
    assert "not started. A Carrier Optimization has not been completed" in response.content.decode()
    assert OptimizationSession.objects.filter(provider=provider_a).count() == 1

