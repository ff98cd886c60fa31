"""Go/No-Go: ten minutes to spare after one batch at the best measured rate, else nothing is sent and an e-mail says why."""
import datetime as dt

import pytest
from django.core import mail

from pushes import decide, notify
from pushes.create import push_create
from pushes.decide import push_decide
from pushes.models import RatePlanChange
from rateplans.services import billing_period_current
from tests.pushes.helpers import NO_COMMITS, fleet, mid_period, moves

pytestmark = pytest.mark.django_db(transaction=True)  # queued tasks run when their transaction commits


@NO_COMMITS
def test_no_go_when_the_period_ends_too_soon_is_recorded_and_emailed_and_sends_nothing(simulator):
    server = simulator(sims=300, seed=23)
    provider = fleet(server, devices=300, seed=23)
    period = billing_period_current(provider=provider)
    changes = moves(provider, 100)
    # 100 changes at 60 SIMs/min need 1.7 min; with 11 min left, 9.3 would remain: fewer than 10.
    now = period.ends_at() - dt.timedelta(minutes=11)

    push = push_create(provider=provider, changes=changes, period=period, trigger="test", now=now)

    assert push.status == "no_go" and push.decision == "no_go"
    assert abs(push.minutes_needed - 100 / 60) < 1e-9 and abs(push.minutes_left - 11) < 1e-6
    assert "No-Go" in push.decision_reason and "nothing was changed" in push.decision_reason
    assert not RatePlanChange.objects.filter(push=push).exists()
    assert not server.carrier.request_log()
    [email] = mail.outbox
    assert email.subject == notify.NO_GO_SUBJECT
    assert push.decision_reason in email.body and email.to == ["fleet-ops@acme.example"]
    # No-Go holds no lock: a push with time to spare can start at once.
    assert push_create(provider=provider, changes=changes, period=period, now=now - dt.timedelta(minutes=2)).decision == "go"


@NO_COMMITS
@pytest.mark.parametrize(("changes", "minutes_left", "go"), [
    (100, 11.66, False),  # 1.67 needed, 9.99 would remain: not "at least 10", by a hair
    (100, 11.70, True),
    (1000, 14.0, False),  # needed is min(1000, 250) / 60 = 4.17
    (1000, 14.2, True),
    (0, 10.0, True),
    (10, -5.0, False),  # the period is over
])
def test_go_needs_ten_minutes_to_spare_after_one_batch_at_the_rate(provider_a, changes, minutes_left, go):
    period = billing_period_current(provider=provider_a)
    now = period.ends_at() - dt.timedelta(minutes=minutes_left)
    decision = push_decide(provider=provider_a, period=period, changes=changes, batch_size=250, now=now)
    assert decision.go is go, decision.reason
    assert decision.rate_per_minute == 60 and "default" in decision.rate_source


def test_the_best_measured_rate_of_an_earlier_push_plans_the_next(inline_tasks, simulator):
    server = simulator(sims=200, seed=24)
    provider = fleet(server, devices=200, seed=24)
    period, now = mid_period(provider)
    first = push_create(provider=provider, changes=moves(provider, 80), period=period, now=now)
    first.refresh_from_db()
    assert first.status == "succeeded" and first.measured_rate > 60

    rate, source = decide.push_rate_best(provider=provider)
    assert rate == first.measured_rate and f"push #{first.pk}" in source
    decision = push_decide(provider=provider, period=period, changes=500, batch_size=250, now=now)
    assert decision.minutes_needed == pytest.approx(250 / first.measured_rate)
    # A lower limit since then caps it: 1 call/s is 30 SIMs/min, at a read and a PUT per SIM.
    provider.rate_limit_per_second = 1
    provider.save()
    rate, source = decide.push_rate_best(provider=provider)
    assert rate == 30 and "capped" in source
