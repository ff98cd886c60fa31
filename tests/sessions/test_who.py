"""Who did what: a session records who started it (the user, the schedule, the command) and who cancelled it,
shown in the API, the admin, the session page and the report (pushes: tests/pushes, applied_by)."""
import io

from django.core.management import call_command
from django.urls import reverse
from openpyxl import load_workbook

from sessions.models import OptimizationSession
from sessions.reports import report_open, report_write


def test_api_start_and_cancel_record_the_tokens_user(api, provider_a):
    body = api.post(reverse("api:session-list"), {"provider": provider_a.pk, "sync_devices": False},
                    content_type="application/json").json()
    assert body["started_by"] == "alice" and body["cancelled_by"] == ""
    cancelled = api.post(reverse("api:session-cancel", kwargs={"guid": body["id"]})).json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_by"] == "alice"
    assert cancelled["error"] == "Cancelled by alice."
    detail = api.get(reverse("api:session-detail", kwargs={"guid": body["id"]})).json()
    assert (detail["started_by"], detail["cancelled_by"]) == ("alice", "alice")


def test_a_dashboard_start_says_who(alice_client, provider_a):
    alice_client.post(reverse("dashboard:session-start", args=[provider_a.pk]))
    session = OptimizationSession.objects.get()
    assert session.started_by == "alice"
    page = alice_client.get(reverse("dashboard:session-detail", args=[session.guid])).content.decode()
    assert '<span id="started-by">alice</span>' in page


def test_admin_and_command_starts_say_who(root_client, provider_a, django_user_model):
    root = django_user_model.objects.get(is_superuser=True)
    root_client.post(reverse("admin:rateplans_serviceprovider_changelist"), {
        "action": "start_optimization_session", "_selected_action": [provider_a.pk], "start": "Start"})
    by_admin = OptimizationSession.objects.get(status="pending")
    assert by_admin.started_by == root.get_username()
    listed = root_client.get(reverse("admin:optsessions_optimizationsession_changelist")).content.decode()
    assert "field-started_by" in listed and f">{root.get_username()}<" in listed
    OptimizationSession.objects.update(status="cancelled")

    call_command("optimize", "--provider", str(provider_a.pk), "--no-sync", stdout=io.StringIO(), stderr=io.StringIO())
    assert OptimizationSession.objects.get(status="pending").started_by.startswith("command")


def test_the_report_says_who_started_the_session(completed_session, provider_a):
    session = completed_session(provider=provider_a, groups=1, sims_per_group=3)
    assert session.started_by.startswith("command"), "run through session_start with no user: the command's label"
    OptimizationSession.objects.filter(pk=session.pk).update(started_by="amop-integration")
    session.refresh_from_db()
    wb = load_workbook(report_open(report_write(session=session)))
    summary = {row[0]: row[1] for row in wb["Summary"].iter_rows(values_only=True) if row and row[0]}
    assert summary["Started by"] == "amop-integration"
