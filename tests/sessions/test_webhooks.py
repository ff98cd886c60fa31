"""AMOP 2.0 webhooks: the outbox is delivered signed, in order, retried, and once per event id."""
import json

import pytest
from django.db import transaction
from django.test import override_settings

from sessions.events import event_record
from sessions.models import EventKind, OptimizationSession, ProgressEvent
from sessions.webhooks import EVENT_HEADER, SIGNATURE_HEADER, events_deliver, signature_valid
from tests.factories_results import OptimizationRunFactory
from tests.webhook_receiver import Receiver

SECRET = "test-webhook-secret"


@pytest.fixture
def session(provider_a, period_a):
    return OptimizationSession.objects.create(tenant=provider_a.tenant, provider=provider_a, billing_period=period_a,
        run=OptimizationRunFactory(provider=provider_a, billing_period=period_a), status="running")


def record(session, **kwargs):
    with transaction.atomic():
        return event_record(session=session, **kwargs)


@override_settings(AMOP_WEBHOOK_BACKOFF_BASE=0)
def test_500_three_times_then_200_is_one_event_four_attempts_delivered_once(session):
    event = record(session, progress=20)
    with Receiver([500, 500, 500, 200]) as receiver:
        for _ in range(6):
            events_deliver(url=receiver.url, secret=SECRET)
    event.refresh_from_db()
    assert event.attempts == 4 and event.delivered_at is not None
    assert len(receiver.requests) == 4
    assert {r["headers"][EVENT_HEADER] for r in receiver.requests} == {str(event.event_id)}


def test_payload_is_the_legacy_shape_plus_event_id_and_sequence(session):
    record(session, progress=30)
    with Receiver() as receiver:
        events_deliver(url=receiver.url, secret=SECRET)
    data = json.loads(receiver.requests[0]["body"])["data"]
    assert data["path"] == "/get_optimization_progress_bar_data" and data["job_name"] == "Progress"
    assert data["Progress"] == 30 and data["SessionId"] == session.pk
    assert data["OptimizationSessionGuid"] == str(session.guid) and data["CustomerId"] == session.tenant_id
    assert json.loads(data["AdditionalJson"])["data"]["OptimizationFrom"] == "group"
    assert data["Sequence"] == 1 and data["EventId"]


def test_error_events_use_the_error_path(session):
    record(session, kind=EventKind.ERROR, error_message="One or more Rate Plans have invalid Data per Overage Charge or Overage Rate")
    with Receiver() as receiver:
        events_deliver(url=receiver.url, secret=SECRET)
    data = json.loads(receiver.requests[0]["body"])["data"]
    assert data["path"] == "/get_optimization_error_details_data" and data["job_name"] == "ErrorMessage"
    assert data["ErrorMessage"].startswith("One or more Rate Plans")


def test_signature_verifies_and_a_bad_one_is_detectable(session):
    record(session, progress=40)
    with Receiver() as receiver:
        events_deliver(url=receiver.url, secret=SECRET)
    request = receiver.requests[0]
    assert signature_valid(request["body"], request["headers"][SIGNATURE_HEADER], SECRET)
    assert not signature_valid(request["body"], request["headers"][SIGNATURE_HEADER], "another-secret")
    assert not signature_valid(request["body"] + b" ", request["headers"][SIGNATURE_HEADER], SECRET)


@override_settings(AMOP_WEBHOOK_BACKOFF_BASE=0)
def test_a_failing_event_holds_back_later_events_of_its_session(session):
    first, second = record(session, progress=20), record(session, progress=30)
    with Receiver([500]) as receiver:
        events_deliver(url=receiver.url, secret=SECRET)
        assert len(receiver.requests) == 1  # the second waits behind the first
        events_deliver(url=receiver.url, secret=SECRET)
    progress = [json.loads(r["body"])["data"]["Progress"] for r in receiver.requests]
    assert progress == [20, 20, 30]
    assert ProgressEvent.objects.filter(delivered_at__isnull=True).count() == 0
    assert (first.sequence, second.sequence) == (1, 2)


@override_settings(AMOP_WEBHOOK_BACKOFF_BASE=60)
def test_backoff_waits_before_retrying(session):
    record(session, progress=20)
    with Receiver([500, 200]) as receiver:
        events_deliver(url=receiver.url, secret=SECRET)
        report = events_deliver(url=receiver.url, secret=SECRET)
    assert len(receiver.requests) == 1 and report.waiting == 1


@pytest.mark.django_db(transaction=True)
def test_nothing_is_recorded_for_a_transaction_that_rolled_back(provider_a, period_a):
    session = OptimizationSession.objects.create(tenant=provider_a.tenant, provider=provider_a, billing_period=period_a,
        run=OptimizationRunFactory(provider=provider_a, billing_period=period_a), status="running")
    with pytest.raises(RuntimeError), transaction.atomic():
        event_record(session=session, progress=20)
        raise RuntimeError("the state change failed")
    assert not ProgressEvent.objects.exists()
    with Receiver() as receiver:
        events_deliver(url=receiver.url, secret=SECRET)
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_event_outside_a_transaction_is_refused(session):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        event_record(session=session, progress=20)


def test_a_long_sending_pass_still_holds_a_live_lease_on_the_event_it_sends(session, monkeypatch):
    # A pass that has been sending for minutes must not take an already-lapsed lease: a second
    # sender running meanwhile would post the same event again.
    import datetime as dt

    from django.utils import timezone

    from sessions import webhooks

    events = [record(session, progress=20), record(session, progress=30)]
    clock = [timezone.now()]
    monkeypatch.setattr(webhooks.timezone, "now", lambda: clock[0])
    leases_at_post = []
    real_post = webhooks.httpx.Client.post

    def slow_post(self, url, **kwargs):
        posted = ProgressEvent.objects.get(event_id=kwargs["headers"][EVENT_HEADER])
        leases_at_post.append((posted.next_attempt_at, clock[0]))
        response = real_post(self, url, **kwargs)
        clock[0] += dt.timedelta(minutes=5)  # this POST took five minutes
        return response

    monkeypatch.setattr(webhooks.httpx.Client, "post", slow_post)
    with Receiver() as receiver:
        events_deliver(url=receiver.url, secret=SECRET)
    assert len(leases_at_post) == len(events)
    assert all(lease > at for lease, at in leases_at_post), leases_at_post
