"""The push in the browser: preview the Go/No-Go, apply with a confirmation, follow the push; read-only users look only."""
import re

import pytest
from django.urls import reverse

from pushes.models import RatePlanPush
from pushes.recommendations import session_changes
from tests.pushes.helpers import completed_session, fleet

pytestmark = pytest.mark.django_db(transaction=True)  # the push's queued batches run when it commits


@pytest.fixture
def fleet_session(simulator, tenant_a, inline_tasks):
    server = simulator(sims=200, seed=41)
    provider = fleet(server, devices=200, seed=41, tenant=tenant_a)
    return server, completed_session(provider)


def test_preview_shows_the_changes_and_the_go_decision_and_records_nothing(fleet_session, alice_client):
    _, session = fleet_session
    changes = session_changes(session=session)
    body = alice_client.get(reverse("pushes:session-apply", args=[session.guid])).content.decode()
    assert f'data-field="changes">{len(changes)}<' in body
    assert re.search(r'id="go-no-go" class="alert success">Go: ', body)
    assert 'id="apply-form"' in body and not RatePlanPush.objects.exists()


def test_apply_needs_the_confirmation_then_pushes_and_shows_the_push(fleet_session, alice_client):
    server, session = fleet_session
    url = reverse("pushes:session-apply", args=[session.guid])
    unconfirmed = alice_client.post(url)
    assert unconfirmed.status_code == 400 and "Tick the box" in unconfirmed.content.decode()
    assert not RatePlanPush.objects.exists()

    expected = len(session_changes(session=session))
    response = alice_client.post(url, {"confirm": "yes"})
    push = RatePlanPush.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("pushes:push-detail", args=[push.pk])
    assert push.trigger == "dashboard" and push.total == expected and push.applied_by == "alice"
    page = alice_client.get(response["Location"]).content.decode()
    assert '<span id="applied-by">alice</span>' in page
    push.refresh_from_db()
    assert push.status == "succeeded"
    assert f'data-field="applied">{expected}<' in page and f'data-field="verified">{expected}<' in page
    detail = alice_client.get(reverse("api:push-detail", args=[push.pk])).json()
    assert detail["applied"] == expected and detail["remaining"] == 0
    # Applying again has nothing left to send.
    again = alice_client.get(url).content.decode()
    assert 'id="nothing-to-apply"' in again and f"#{push.pk}</a>" in again


def test_a_read_only_member_sees_the_preview_but_cannot_apply_anywhere(fleet_session, client, reader, api):
    _, session = fleet_session
    client.force_login(reader)
    url = reverse("pushes:session-apply", args=[session.guid])
    page = client.get(url).content.decode()
    assert 'id="read-only"' in page and 'id="apply-form"' not in page
    refused = client.post(url, {"confirm": "yes"})
    assert refused.status_code == 403 and "pushes.apply_recommendations" in refused.content.decode()
    from rest_framework.authtoken.models import Token

    api.defaults["HTTP_AUTHORIZATION"] = f"Token {Token.objects.get_or_create(user=reader)[0].key}"
    answer = api.post(reverse("api:session-apply", kwargs={"guid": session.guid}))
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "permission_denied"
    assert not RatePlanPush.objects.exists()


def test_someone_elses_session_and_push_are_404(fleet_session, client, bob, tenant_b):
    _, session = fleet_session
    client.force_login(bob)
    assert client.get(reverse("pushes:session-apply", args=[session.guid])).status_code == 404


def test_the_preview_counts_what_the_push_would_send_without_loading_it(fleet_session, alice_client):
    """The apply page's figures come from the database (a million-SIM session's changes took seconds to load):
    the same changes, and the same saving, as the push itself would send; a SIM pinned since is in neither."""
    from decimal import Decimal

    from devices.models import DevicePin
    from optimizer.models import DeviceAssignment
    from pushes.recommendations import session_changes_summary

    _, session = fleet_session
    pinned = DeviceAssignment.objects.filter(run=session.run, changed=True).order_by("iccid").first()
    DevicePin.objects.create(device_id=pinned.device_id, reason="test")
    changes = session_changes(session=session)
    summary = session_changes_summary(session=session)
    assert pinned.iccid not in {c.iccid for c in changes} and changes
    assert summary.changes == len(changes)
    assert summary.saving == sum((c.saving for c in changes if c.saving is not None), start=Decimal(0)) > 0
    body = alice_client.get(reverse("pushes:session-apply", args=[session.guid])).content.decode()
    assert f'data-field="changes">{len(changes)}<' in body
