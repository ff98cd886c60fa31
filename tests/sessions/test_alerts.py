"""Alerts: one e-mail per incident to the account's recipients and OPS_EMAILS, from the real code paths
(a carrier simulator refusing the key or down, a webhook receiver that always answers 400, the watchdog)."""
import datetime as dt

import pytest
from django.core import mail
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from devices import services as device_services
from devices.testing import fast_client, simulated_provider
from rateplans.alerts import alert_raise
from rateplans.models import Alert
from sessions import pipeline
from sessions.events import event_record
from sessions.models import OptimizationSession
from sessions.services import ALREADY_RUNNING_SUBJECT, SessionAlreadyRunning, session_start
from sessions.watchdog import watchdog_run
from sessions.webhooks import events_deliver
from tests.webhook_receiver import Receiver

OPS = ["ops@example.com"]


@pytest.fixture(autouse=True)
def _ops(settings):
    settings.OPS_EMAILS = OPS


def test_refused_starts_of_one_running_session_send_one_email(demo):
    running = session_start(provider=demo.provider, sync_devices=False)
    for _ in range(5):
        with pytest.raises(SessionAlreadyRunning):
            session_start(provider=demo.provider, sync_devices=False)
    assert [m.subject for m in mail.outbox] == [ALREADY_RUNNING_SUBJECT]
    assert mail.outbox[0].to == [*demo.provider.recipients, *OPS]
    assert str(running.guid) in mail.outbox[0].body
    alert = Alert.objects.get()
    assert alert.kind == "already_running" and alert.occurrences == 5 and alert.sent_at is not None


def test_a_repeat_after_the_window_is_a_new_incident(demo, settings):
    settings.ALERT_DEDUP_MINUTES = 30
    now = timezone.now()
    for minutes in (0, 20, 45):  # 20 is inside the window of 0; 45 is 25 after 20: the window moves with the repeat
        alert_raise(provider=demo.provider, kind="watchdog", key="x", subject="s", body="b",
                    now=now + dt.timedelta(minutes=minutes))
    alert_raise(provider=demo.provider, kind="watchdog", key="x", subject="s", body="b", now=now + dt.timedelta(minutes=80))
    assert len(mail.outbox) == 2
    assert list(Alert.objects.order_by("first_at").values_list("occurrences", flat=True)) == [3, 1]


def test_refused_credentials_fail_the_session_with_two_alerts(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant, api_key="sk-wrong-secret-0002")
    session = session_start(provider=provider)
    pipeline.stage_start(session.pk)
    pipeline.stage_sync(session.pk)
    session.refresh_from_db()
    assert session.status == "failed" and "HTTP 401" in session.error
    by_subject = {m.subject: m for m in mail.outbox}
    credentials = by_subject[f"Carrier refused the credentials of {provider.name}"]
    assert "refused username 'demo-api-user'" in credentials.body and "HTTP 401" in credentials.body
    failed = by_subject[f"Optimization failed for {provider.name}: {session.error}"[:300]]
    assert f"Why: {session.error}" in failed.body and "Device table unchanged." in failed.body
    assert "What was kept:" in failed.body and "No rate plan was changed on the carrier" in failed.body
    assert "This account has no completed session yet." in failed.body
    assert len(mail.outbox) == 2 and all(m.to == ["fleet-ops@example.com", *OPS] for m in mail.outbox)
    for message in mail.outbox:
        assert "sk-wrong-secret-0002" not in message.subject + message.body
    # The daily sync refused again within the window: counted, not mailed.
    assert device_services.device_sync(provider=provider).status == "failed"
    assert len(mail.outbox) == 2
    assert Alert.objects.get(kind="carrier_auth").occurrences == 2


def test_a_carrier_outage_opens_the_breaker_and_alerts_once(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant, max_concurrency=1)
    carrier_simulator.carrier.faults.outage = True
    client = fast_client(provider, attempts=1, threshold=2)  # the breaker counts calls that failed for good
    runs = [device_services.device_sync(provider=provider, client=client) for _ in range(3)]
    assert "gave up after 1 attempts" in runs[0].error
    assert all(r.status == "failed" and "circuit open after 2 calls failed for good" in r.error for r in runs[1:])
    [message] = mail.outbox
    assert message.subject == f"Carrier calls of {provider.name} stopped: circuit breaker open"
    assert "HTTP 500" in message.body and f"sync #{runs[1].pk}" in message.body
    assert Alert.objects.get().occurrences == 2


def test_watchdog_actions_are_one_email_per_session(demo, settings):
    session = session_start(provider=demo.provider, sync_devices=False)
    settings.STAGE_STALL_SECONDS = 10
    for seconds in (30, 60):
        assert watchdog_run(now=timezone.now() + dt.timedelta(seconds=seconds))["nudged"] == 1
    [message] = mail.outbox
    assert message.subject == f"Watchdog acted on the optimization of {demo.provider.name}"
    assert str(session.guid) in message.body and "its task was queued again" in message.body
    assert Alert.objects.get(kind="watchdog").occurrences == 2


def test_a_session_past_its_deadline_is_one_failure_email(demo):
    session = session_start(provider=demo.provider, sync_devices=False)
    OptimizationSession.objects.filter(pk=session.pk).update(deadline=timezone.now() - dt.timedelta(seconds=1))
    watchdog_run()
    watchdog_run()
    [message] = mail.outbox
    assert message.subject.startswith(f"Optimization failed for {demo.provider.name}: The session did not finish "
                                      "before its deadline")
    assert "Reached: Start (0 %)" in message.body


@override_settings(AMOP_WEBHOOK_BACKOFF_BASE=0, AMOP_WEBHOOK_MAX_ATTEMPTS=2)
def test_dead_lettered_webhook_events_are_one_alert(demo):
    session = session_start(provider=demo.provider, sync_devices=False)
    with transaction.atomic():
        event_record(session=session, progress=20)
    with Receiver([400] * 10) as receiver:
        for _ in range(4):
            events_deliver(url=receiver.url, secret="s")
    assert len(receiver.requests) == 4  # two events, two attempts each, then set aside
    [message] = mail.outbox
    assert message.subject == f"AMOP webhook gave up on an event of {demo.provider.name}"
    assert "2 times; the last answer was HTTP 400" in message.body
    first = session.events.order_by("sequence").first()
    assert str(first.event_id) in message.body
    assert Alert.objects.get().occurrences == 2
