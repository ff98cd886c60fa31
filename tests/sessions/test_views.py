"""Operator dashboard: login, sessions list with progress and start buttons (409 shown), session page."""
from django.urls import reverse

from sessions.models import OptimizationSession
from sessions.reports import report_write
from tests.factories_results import OptimizationRunFactory
from tests.report_storage import use_report_folder


def test_pages_need_a_login(completed_session, client, provider_a):
    session = completed_session(provider=provider_a, groups=1, sims_per_group=1)
    for url in ["/", reverse("dashboard:session-detail", args=[session.guid])]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    response = client.post(reverse("dashboard:session-start", args=[provider_a.pk]))
    assert response.status_code == 302
    assert not OptimizationSession.objects.filter(status="pending").exists()


def test_login_with_password_lands_on_the_sessions_list(client, alice, tenant_a):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    response = client.post("/accounts/login/", {"username": "alice", "password": "correct horse battery staple"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_list_shows_own_accounts_and_sessions_with_progress_bars(completed_session, alice_client, provider_a, provider_b):
    mine = completed_session(provider=provider_a, groups=1, sims_per_group=2)
    theirs = completed_session(provider=provider_b, groups=1, sims_per_group=2)
    running = OptimizationSession.objects.create(tenant=provider_a.tenant, provider=provider_a, status="running",
                                                 stage="optimizing", progress=50,
                                                 billing_period=mine.billing_period,
                                                 run=OptimizationRunFactory(provider=provider_a, billing_period=mine.billing_period))
    body = alice_client.get("/").content.decode()
    assert provider_a.name in body and provider_b.name not in body
    assert str(mine.guid) in body and str(theirs.guid) not in body
    assert f'data-guid="{running.guid}" data-active="1"' in body
    assert 'aria-valuenow="50"' in body and 'aria-valuenow="100"' in body
    assert reverse("dashboard:session-start", args=[provider_a.pk]) in body
    assert "/api/sessions/" in body, "the page polls the REST API for live progress"
    assert "<script src" not in body and "https://" not in body, "nothing is fetched from elsewhere"


def test_start_button_starts_then_shows_the_409_refusal(alice_client, provider_a):
    url = reverse("dashboard:session-start", args=[provider_a.pk])
    response = alice_client.post(url, {"sync_devices": "on"}, follow=True)
    assert response.status_code == 200
    session = OptimizationSession.objects.get(provider=provider_a)
    assert session.trigger == "dashboard" and session.status == "pending" and session.sync_devices
    assert f"Started optimization session {session.guid}" in response.content.decode()

    refused = alice_client.post(url)
    assert refused.status_code == 409
    body = refused.content.decode()
    assert 'role="alert"' in body and "Not started for Alice Jasper" in body
    assert "A Carrier Optimization has not been completed" in body
    assert reverse("dashboard:session-detail", args=[session.guid]) in body
    assert OptimizationSession.objects.filter(provider=provider_a).count() == 1


def test_start_without_the_sync_box_skips_the_carrier_sync(alice_client, provider_a):
    alice_client.post(reverse("dashboard:session-start", args=[provider_a.pk]))
    assert OptimizationSession.objects.get(provider=provider_a).sync_devices is False


def test_start_for_another_tenants_account_is_404(alice_client, provider_b):
    assert alice_client.post(reverse("dashboard:session-start", args=[provider_b.pk])).status_code == 404
    assert alice_client.get(reverse("dashboard:session-start", args=[provider_b.pk])).status_code == 405
    assert not OptimizationSession.objects.exists()


def test_session_page_shows_totals_chart_groups_and_report_link(completed_session, alice_client, provider_a, settings, tmp_path):
    # The pipeline wrote a report; the page first shows the session as if none were written yet.
    session = completed_session(provider=provider_a, groups=2, sims_per_group=3, report_path="")
    use_report_folder(settings, tmp_path)
    url = reverse("dashboard:session-detail", args=[session.guid])
    body = alice_client.get(url).content.decode()
    for value in (session.current_cost, session.optimized_cost, session.savings, session.lower_bound):
        assert f"{value:,.2f}" in body, value
    assert f"{session.gap * 100:.3f} %" in body
    assert '<svg id="plan-chart"' in body
    codes = {a.recommended_plan.code for a in session.run.assignments.all()}
    for code in codes:
        assert f'data-label="{code}"' in body
    assert body.count('class="before"') == body.count('class="after"') >= len(codes)
    assert "<td>G1</td>" in body and "<td>G2</td>" in body
    assert "report-link" not in body and "written when the session completes" in body

    session.report_path = report_write(session=session)
    session.save()
    body = alice_client.get(url).content.decode()
    assert f'href="/api/sessions/{session.guid}/report/"' in body
    download = alice_client.get(f"/api/sessions/{session.guid}/report/")
    assert download.status_code == 200, "the dashboard's login session is enough to download"


def test_session_page_of_another_tenant_is_404(completed_session, alice_client, provider_b):
    session = completed_session(provider=provider_b, groups=1, sims_per_group=1)
    assert alice_client.get(reverse("dashboard:session-detail", args=[session.guid])).status_code == 404




