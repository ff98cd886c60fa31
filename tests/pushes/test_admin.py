"""The push admin, and the "Apply recommended rate plans" action on sessions."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pushes.models import RatePlanPush
from pushes.recommendations import session_apply
from rateplans.services import billing_period_current
from tests.factories_results import session_with_results
from tests.pushes.helpers import NO_COMMITS

pytestmark = pytest.mark.django_db(transaction=True)  # queued tasks run when their transaction commits


@NO_COMMITS
def test_admin_action_applies_the_selected_session(client, provider_a):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    session = session_with_results(provider=provider_a, period=billing_period_current(provider=provider_a))
    response = client.post(reverse("admin:optsessions_optimizationsession_changelist"),
                           {"action": "apply_recommendations", "_selected_action": [session.pk]}, follow=True)
    assert response.status_code == 200
    push = RatePlanPush.objects.get(session=session)
    assert push.trigger == "admin" and push.decision == "go"
    assert f"rate plan update #{push.pk}" in response.content.decode()
    page = client.get(reverse("admin:pushes_rateplanpush_change", args=[push.pk]))
    assert page.status_code == 200 and b"remaining" in page.content


@NO_COMMITS
def test_the_push_changelist_takes_as_many_queries_for_four_pushes_as_for_one(client, provider_a,
                                                                             django_assert_num_queries):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    session = session_with_results(provider=provider_a, period=billing_period_current(provider=provider_a))
    url = reverse("admin:pushes_rateplanpush_changelist")
    session_apply(session=session, trigger="test")
    with CaptureQueriesContext(connection) as one:
        assert client.get(url).status_code == 200
    for _ in range(3):
        RatePlanPush.objects.filter(session=session, status="running").update(status="succeeded")
        session_apply(session=session, trigger="test")

    with django_assert_num_queries(len(one.captured_queries)):
        response = client.get(url)
    assert response.status_code == 200 and response.content.decode().count('class="action-select"') == 4
