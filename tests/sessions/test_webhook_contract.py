"""The AMOP contract of the webhook: bearer key beside the HMAC signature, the 100 % event's Results, an event the
receiver always refuses is dead-lettered and skipped so the rest of the session flows, and re-sent from the admin."""
import json
from decimal import Decimal

import pytest
from django.core import mail
from django.test import override_settings
from django.urls import reverse

from optimizer.models import DeviceAssignment
from sessions.models import OptimizationSession, ProgressEvent
from sessions.services import session_start
from sessions.webhooks import SIGNATURE_HEADER, events_deliver, signature_valid
from tests.config.test_metrics import TOKEN as METRICS_TOKEN
from tests.config.test_metrics import scrape, value
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.demo(devices=200, seed=12)]
SECRET = "amop-contract-secret"
KEY = "amop-api-key-for-tests"


def completed(provider):
    session = session_start(provider=provider, sync_devices=False)
    session = OptimizationSession.objects.get(pk=session.pk)
    assert session.status == "succeeded", session.error
    return session


def refuse_sequence_3(body):
    return 400 if json.loads(body)["data"].get("Sequence") == 3 else None


def deliver_all(receiver, rounds=10):
    for _ in range(rounds):
        events_deliver(url=receiver.url, secret=SECRET, api_key=KEY)


@override_settings(AMOP_WEBHOOK_BACKOFF_BASE=0, AMOP_WEBHOOK_MAX_ATTEMPTS=3, SITE_URL="https://opt.example.com")
def test_a_refused_event_is_dead_lettered_and_the_rest_of_the_session_flows(inline_tasks, demo, settings, client):
    settings.OPS_EMAILS = ["ops@example.com"]
    session = completed(demo.provider)
    events = list(session.events.order_by("sequence"))
    assert len(events) > 4 and events[-1].progress == 100
    with Receiver(status_for=refuse_sequence_3) as amop:
        deliver_all(amop)
    bodies = [json.loads(r["body"])["data"] for r in amop.requests]
    delivered = [b["Sequence"] for b, r in zip(bodies, amop.requests, strict=True) if b["Sequence"] != 3]
    assert [b["Sequence"] for b in bodies].count(3) == 3  # three attempts, then set aside
    assert delivered == [e.sequence for e in events if e.sequence != 3]  # 1, 2, then 4..N in order
    assert bodies[-1]["Progress"] == 100
    third = ProgressEvent.objects.get(session=session, sequence=3)
    assert third.dead_lettered_at is not None and third.delivered_at is None and third.last_error == "HTTP 400"
    assert [m.subject for m in mail.outbox if "AMOP webhook" in m.subject] == [
        f"AMOP webhook gave up on an event of {demo.provider.name}"]
    # Set aside, not waiting: the metrics count it on its own and the backlog is empty.
    settings.METRICS_TOKEN, settings.AMOP_WEBHOOK_URL = METRICS_TOKEN, amop.url  # webhook metrics need a URL
    samples = scrape(client, token=METRICS_TOKEN)
    assert value(samples, "carrieropt_webhook_dead_lettered") == 1
    assert value(samples, "carrieropt_webhook_backlog") == 0
    assert value(samples, "carrieropt_webhook_oldest_undelivered_age_seconds") == 0

    # The 100 % event's Results are the session's stored totals.
    results = bodies[-1]["Results"]
    session.refresh_from_db()
    assert results["SIMs"] == session.device_count > 0
    assert Decimal(results["CurrentCost"]) == session.current_cost
    assert Decimal(results["OptimizedCost"]) == session.optimized_cost
    assert Decimal(results["Savings"]) == session.current_cost - session.optimized_cost
    assert Decimal(results["LowerBound"]) == session.lower_bound
    assert Decimal(results["Gap"]) == pytest.approx(session.figures.gap, abs=Decimal("0.0001"))
    assert results["Changes"] == DeviceAssignment.objects.filter(run=session.run, changed=True).count()
    assert results["NoUsageCount"] == session.no_usage_count
    assert results["ReportUrl"] == f"https://opt.example.com/api/sessions/{session.guid}/report/"

    # Both authentications on every request.
    for request in amop.requests:
        assert request["headers"]["Authorization"] == f"Bearer {KEY}"
        assert signature_valid(request["body"], request["headers"][SIGNATURE_HEADER], SECRET)


@override_settings(AMOP_WEBHOOK_BACKOFF_BASE=0, AMOP_WEBHOOK_MAX_ATTEMPTS=1)
def test_the_admin_resends_a_dead_lettered_event(inline_tasks, demo, root_client):
    session = completed(demo.provider)
    with Receiver(status_for=refuse_sequence_3) as amop:
        deliver_all(amop, rounds=2)
    third = ProgressEvent.objects.get(session=session, sequence=3)
    assert third.dead_lettered_at is not None
    url = reverse("admin:optsessions_progressevent_changelist")
    response = root_client.post(url, {"action": "resend", "_selected_action": [third.pk]}, follow=True)
    assert "1 dead-lettered event(s) queued to be sent again" in response.content.decode()
    third.refresh_from_db()
    assert third.dead_lettered_at is None and third.attempts == 0
    with Receiver() as fixed:
        events_deliver(url=fixed.url, secret=SECRET, api_key=KEY)
    assert [json.loads(r["body"])["data"]["Sequence"] for r in fixed.requests] == [3]
    third.refresh_from_db()
    assert third.delivered_at is not None


def test_without_a_key_or_secret_the_header_is_left_out(db, demo):
    from django.db import transaction

    from sessions.events import event_record

    session = session_start(provider=demo.provider, sync_devices=False)
    with transaction.atomic():
        event_record(session=session, progress=20)
    with Receiver() as amop:
        events_deliver(url=amop.url, secret="", api_key="")
    assert all("Authorization" not in r["headers"] and SIGNATURE_HEADER not in r["headers"] for r in amop.requests)
