"""Go/No-Go: every change and its read back at the best measured rate, with ten minutes to spare; when only some
batches fit, those go (largest savings first) and each batch is checked again before it is sent."""
import datetime as dt
from dataclasses import replace
from decimal import Decimal

import pytest
from django.core import mail

from pushes import decide, notify
from pushes.batches import push_batch_run
from pushes.create import push_create
from pushes.decide import push_decide
from pushes.models import RatePlanChange, RatePlanPushBatch
from pushes.verify import push_verify_run
from rateplans.services import billing_period_current
from tests.pushes.helpers import NO_COMMITS, api_changes, fleet, mid_period, moves

pytestmark = pytest.mark.django_db(transaction=True)  # queued tasks run when their transaction commits


@NO_COMMITS
def test_no_go_when_the_period_ends_too_soon_is_recorded_and_emailed_and_sends_nothing(simulator):
    server = simulator(sims=300, seed=23)
    provider = fleet(server, devices=300, seed=23)
    period = billing_period_current(provider=provider)
    changes = moves(provider, 100)
    # 100 changes at 60 SIMs/min: 1.7 min to send, 0.8 to read back, and the verification's wait; with 11 min
    # left, 8.5 would remain, and not even the one batch fits with 10 to spare.
    now = period.ends_at() - dt.timedelta(minutes=11)

    push = push_create(provider=provider, changes=changes, period=period, trigger="test", now=now)

    assert push.status == "no_go" and push.decision == "no_go" and push.expected == 0
    wait = push.tuning["verify_delay"] / 60
    assert abs(push.minutes_needed - (100 / 60 + 100 / 120 + wait)) < 1e-9 and abs(push.minutes_left - 11) < 1e-6
    assert "No-Go" in push.decision_reason and "nothing was changed" in push.decision_reason
    assert not RatePlanChange.objects.filter(push=push).exists()
    assert not server.carrier.request_log()
    [email] = mail.outbox
    assert email.subject == notify.NO_GO_SUBJECT
    assert push.decision_reason in email.body and email.to == ["fleet-ops@acme.example"]
    # No-Go holds no lock: a push with time to spare can start at once.
    assert push_create(provider=provider, changes=changes, period=period, now=now - dt.timedelta(minutes=2)).decision == "go"


@NO_COMMITS
@pytest.mark.parametrize(("changes", "minutes_left", "go", "expected"), [
    (100, 12.49, False, 0),  # 2.5 needed (sends, then reads back), 9.99 would remain: not "at least 10", by a hair
    (100, 12.51, True, 100),
    (1000, 35.0, True, 1000),  # 25 needed: all fit with 10 to spare
    (1000, 20.0, True, 250),  # 400 fit in the 10 min before the slack: one whole batch of 250 goes
    (1000, 16.0, False, 0),  # 240 fit: not one batch
    (0, 10.0, True, 0),
    (10, -5.0, False, 0),  # the period is over
])
def test_go_needs_ten_minutes_to_spare_after_every_change_and_its_read_back_or_after_the_batches_that_fit(
        provider_a, settings, changes, minutes_left, go, expected):
    period = billing_period_current(provider=provider_a)
    now = period.ends_at() - dt.timedelta(minutes=minutes_left)
    decision = push_decide(provider=provider_a, period=period, changes=changes, batch_size=250, now=now)
    assert decision.go is go, decision.reason
    assert decision.expected == expected
    assert decision.rate_per_minute == 60 and "default" in decision.rate_source
    assert decision.minutes_needed == pytest.approx(changes * 1.5 / 60)
    if go and expected < changes:
        assert decision.reason.startswith("Go for part") and f"About {expected:,} changes" in decision.reason


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
    assert decision.minutes_needed == pytest.approx(500 * 1.5 / first.measured_rate)
    # A lower limit since then caps it: 1 call/s is 30 SIMs/min, at a read and a PUT per SIM.
    provider.rate_limit_per_second = 1
    provider.save()
    rate, source = decide.push_rate_best(provider=provider)
    assert rate == 30 and "capped" in source


@NO_COMMITS
def test_each_batch_is_checked_again_and_the_push_stops_at_the_last_that_fits(simulator, settings):
    # The push plans at 60 SIMs/min and keeps that rate (no sample large enough to measure its own).
    settings.PUSH_BATCH_SIZE, settings.PUSH_VERIFY_DELAY_SECONDS, settings.PUSH_RATE_MIN_SAMPLE = 100, 0, 10**6
    server = simulator(sims=700, seed=29)
    provider = fleet(server, devices=700, seed=29)
    period = billing_period_current(provider=provider)
    # Savings in an order unrelated to the ICCIDs: the batches that fit must carry the largest.
    changes = [replace(c, saving=Decimal((i * 37) % 600)) for i, c in enumerate(moves(provider, 600))]
    start = period.ends_at() - dt.timedelta(minutes=20)

    push = push_create(provider=provider, changes=changes, period=period, trigger="test", now=start)
    # 600 need 15 min: not with 10 to spare in 20. 400 fit: four batches expected.
    assert push.decision == "go" and push.expected == 400 and "Go for part" in push.decision_reason

    # Each batch takes 100 / 60 min to send. Before batch n the reads back of everything sent grow:
    # batch 4 at 5.0 min: 1.7 + 400 / 120 = 5.0 needed, 15.0 left, 10.0 remain; batch 5 at 6.7 min: 5.8 needed of 13.3.
    outcomes = []
    for number in range(1, 7):
        batch = RatePlanPushBatch.objects.get(push=push, number=number)
        outcomes.append(push_batch_run(batch_id=batch.pk, now=start + dt.timedelta(minutes=(number - 1) * 100 / 60)))
    assert outcomes == ["done"] * 4 + ["deadline", "not_ours"]

    push.refresh_from_db()
    assert push.status == "verifying" and "before batch 5" in push.stopped_early and "Billing period ending" in push.stopped_early
    best = {c.iccid for c in sorted(changes, key=lambda c: -c.saving)[:400]}
    assert set(api_changes(server)) == best
    not_sent = RatePlanChange.objects.filter(push=push, status="not_sent")
    assert not_sent.count() == 200 and not not_sent.filter(sends__gt=0).exists()
    assert {c.error for c in not_sent} == {
        "Not sent: the push stopped before batch 5: the billing period would end first."}

    mail.outbox.clear()
    assert push_verify_run(push_id=push.pk) == "done"
    push.refresh_from_db()
    assert push.status == "finished_with_errors" and push.applied == 400 and push.not_sent == 200
    assert RatePlanChange.objects.filter(push=push, verified=True).count() == 400
    [email] = mail.outbox
    assert "200 not sent (billing period ending)" in email.subject
    assert "Stopped early: Billing period ending" in email.body
    assert "Not sent: the billing period would end before they could be sent and verified: 200" in email.body
