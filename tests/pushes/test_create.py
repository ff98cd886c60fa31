"""Creating a push: one running push per carrier account, enforced by the database and refused by the service."""

import pytest
from django.db import IntegrityError, transaction

from pushes.create import PushAlreadyRunning
from pushes.models import RatePlanPush
from pushes.recommendations import session_apply
from rateplans.services import billing_period_current
from tests.factories_results import session_with_results
from tests.pushes.helpers import NO_COMMITS

pytestmark = pytest.mark.django_db(transaction=True)  # queued tasks run when their transaction commits


@NO_COMMITS
def test_one_running_push_per_account_is_enforced_by_the_database(provider_a):
    period = billing_period_current(provider=provider_a)
    values = {"provider": provider_a, "decision": "go", "period_ends_at": period.ends_at(), "minutes_left": 100,
              "minutes_needed": 1, "rate_per_minute": 60}
    RatePlanPush.objects.create(status="running", **values)
    RatePlanPush.objects.create(status="no_go", **{**values, "decision": "no_go"})
    with pytest.raises(IntegrityError), transaction.atomic():
        RatePlanPush.objects.create(status="verifying", **values)



@NO_COMMITS
def test_a_second_push_while_one_runs_is_refused(provider_a):
    # A fixed seed: the default (the account's id) differs between databases, and a fleet already on its
    # cheapest plans makes a push with nothing to send, finished at once, which blocks nothing.
    session = session_with_results(provider=provider_a, period=billing_period_current(provider=provider_a), seed=7)
    first = session_apply(session=session, trigger="test")
    assert first.status == "running" and first.total > 0
    with pytest.raises(PushAlreadyRunning) as refused:
        session_apply(session=session, trigger="test")
    assert refused.value.extra == {"active_push": first.pk}
