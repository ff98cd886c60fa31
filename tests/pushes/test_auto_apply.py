"""The automatic push after a session completes (sessions' session_completed signal): once, and only where asked."""

import pytest

from pushes.models import RatePlanPush
from tests.pushes.helpers import api_changes, completed_session, fleet

pytestmark = pytest.mark.django_db(transaction=True)  # queued tasks run when their transaction commits


@pytest.mark.parametrize("integration", ["Jasper", "POD19", "TMobileJasper", "Rogers"])
def test_auto_apply_pushes_after_finalize_for_every_jasper_family_account(inline_tasks, simulator, integration):
    server = simulator(sims=250, seed=27)
    provider = fleet(server, devices=250, seed=27, integration=integration, auto_apply=True)
    session = completed_session(provider)
    push = RatePlanPush.objects.get(session=session)
    assert push.trigger == "auto" and push.status == "succeeded", push.error
    assert push.applied_by == "automatic (auto-apply)"
    assert push.applied == push.total == session.run.assignments.filter(changed=True).count() > 0
    assert len(api_changes(server)) == push.total


def test_a_redelivered_automatic_apply_task_pushes_nothing_again(inline_tasks, simulator):
    from pushes import tasks

    server = simulator(sims=200, seed=29)
    provider = fleet(server, devices=200, seed=29, auto_apply=True)
    session = completed_session(provider)
    sent = len(server.carrier.request_log())
    tasks.session_apply_task(session.pk, "auto")  # the broker delivers the same task again
    assert RatePlanPush.objects.filter(session=session).count() == 1
    assert len(server.carrier.request_log()) == sent


@pytest.mark.parametrize(("integration", "auto_apply"), [("Jasper", False), ("Telegence", True)])
def test_no_automatic_push_without_auto_apply_or_outside_the_jasper_family(inline_tasks, simulator, integration,
                                                                            auto_apply):
    server = simulator(sims=150, seed=28)
    provider = fleet(server, devices=150, seed=28, integration=integration, auto_apply=auto_apply)
    session = completed_session(provider)
    assert not RatePlanPush.objects.filter(session=session).exists()
    assert not server.carrier.request_log()
