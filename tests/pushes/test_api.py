"""POST /api/sessions/{guid}/apply/ and GET /api/sessions/{guid}/pushes/."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pushes.models import RatePlanPush, RatePlanPushBatch
from pushes.recommendations import session_apply
from rateplans.services import billing_period_current
from tests.factories_results import session_with_results
from tests.pushes.helpers import NO_COMMITS

pytestmark = pytest.mark.django_db(transaction=True)  # queued tasks run when their transaction commits


def apply_url(session):
    return reverse("api:session-apply", kwargs={"guid": session.guid})


@NO_COMMITS
def test_api_apply_answers_202_with_the_push_then_409_while_it_runs(api, provider_a):
    # Tasks are not run here (no worker): the push stays running, as it would while a worker sends it.
    session = session_with_results(provider=provider_a, period=billing_period_current(provider=provider_a),
                                   groups=2, sims_per_group=6)
    response = api.post(apply_url(session))
    assert response.status_code == 202, response.content
    body = response.json()
    push = RatePlanPush.objects.get(pk=body["id"])
    assert body["status"] == "running" and body["decision"] == "go" and body["session"] == str(session.guid)
    assert body["total"] == body["remaining"] == session.run.assignments.filter(changed=True).count() > 0
    assert body["applied"] == body["failed"] == 0 and body["trigger"] == "api"
    assert body["applied_by"] == "alice" == push.applied_by, "who applied it: the token's user"

    again = api.post(apply_url(session))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "push_running" and again.json()["error"]["active_push"] == push.pk

    listed = api.get(reverse("api:session-pushes", kwargs={"guid": session.guid}))
    assert listed.status_code == 200
    [row] = listed.json()["results"]
    assert row["id"] == push.pk and row["remaining"] == push.total and row["rate_per_minute_measured"] is None


@NO_COMMITS
def test_api_apply_refuses_a_session_that_has_not_completed(api, provider_a):
    session = session_with_results(provider=provider_a, status="running", stage="optimizing", progress=50)
    response = api.post(apply_url(session))
    assert response.status_code == 409 and response.json()["error"]["code"] == "session_not_complete"
    assert not RatePlanPush.objects.exists()


@NO_COMMITS
def test_api_apply_and_pushes_are_tenant_scoped(api, provider_b):
    theirs = session_with_results(provider=provider_b, period=billing_period_current(provider=provider_b))
    assert api.post(apply_url(theirs)).status_code == 404
    assert not RatePlanPush.objects.exists()
    session_apply(session=theirs, trigger="test")
    assert api.get(reverse("api:session-pushes", kwargs={"guid": theirs.guid})).status_code == 404


@NO_COMMITS
def test_api_apply_needs_credentials(client, provider_a):
    session = session_with_results(provider=provider_a)
    assert client.post(apply_url(session)).status_code == 401


@NO_COMMITS
def test_the_pushes_list_takes_as_many_queries_for_four_pushes_as_for_one(api, provider_a, django_assert_num_queries):
    session = session_with_results(provider=provider_a, period=billing_period_current(provider=provider_a),
                                   groups=2, sims_per_group=6)
    url = reverse("api:session-pushes", kwargs={"guid": session.guid})
    first = session_apply(session=session, trigger="test")
    with CaptureQueriesContext(connection) as one:
        assert api.get(url).status_code == 200
    for _ in range(3):
        # Ended without sending anything, so the session can be applied again: each push has the same changes.
        RatePlanPush.objects.filter(session=session, status="running").update(status="succeeded")
        session_apply(session=session, trigger="test")
    assert RatePlanPushBatch.objects.filter(push__session=session).count() == 4 * first.batches.count()

    with django_assert_num_queries(len(one.captured_queries)):
        response = api.get(url)
    rows = response.json()["results"]
    assert len(rows) == 4 and first.total > 0 and {row["remaining"] for row in rows} == {first.total}
