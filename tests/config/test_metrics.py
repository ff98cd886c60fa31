"""/metrics: off without METRICS_TOKEN, 401 without the bearer token, and after a real session on the carrier
simulator (a scripted 429 and 500 included) and a push, every value it shows is what the database holds."""
import datetime as dt
from collections import Counter, deque

import pytest
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from carriers.simulator import Faults
from carriers.simulator.testing import running_simulator
from devices.models import CarrierCallCount, SyncRun
from devices.testing import simulated_provider
from pushes.create import push_create
from pushes.models import RatePlanChange
from sessions.models import OptimizationSession, ProgressEvent
from sessions.services import session_start
from tests.pushes.helpers import mid_period, moves

TOKEN = "metrics-test-token-1234"


def scrape(client, token=TOKEN):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        assert family.name.startswith("carrieropt_"), family.name
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples, name, **labels):
    found = [v for ls, v in samples.get(name, []) if all(ls.get(k) == str(w) for k, w in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


@pytest.mark.django_db
def test_metrics_are_off_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Token {TOKEN}", f"Basic {TOKEN}", "Bearer"])
def test_metrics_without_the_bearer_token_are_401(client, settings, header):
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", **({"HTTP_AUTHORIZATION": header} if header else {}))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"carrieropt_" not in response.content


@pytest.mark.django_db(transaction=True)
def test_scrape_after_a_session_and_a_push_matches_the_database(inline_tasks, tenant_a, client, settings):
    settings.METRICS_TOKEN = TOKEN
    faults = Faults(script=deque(["429", "500"]))
    with running_simulator(sims=300, seed=23, faults=faults) as server:
        provider = simulated_provider(server=server, tenant=tenant_a)
        session = session_start(provider=provider)  # syncs devices and usage from the simulator
        session = OptimizationSession.objects.get(pk=session.pk)
        assert session.status == "succeeded", session.error
        period, now = mid_period(provider)
        push = push_create(provider=provider, changes=moves(provider, 12), period=period, trigger="test", now=now)
    with override_settings(AMOP_WEBHOOK_URL="http://127.0.0.1:9/amop"):  # configured, never reached
        before = timezone.now()
        samples = scrape(client)
        after = timezone.now()
    who = {"provider_id": provider.pk, "provider": provider.name, "tenant": tenant_a.name}

    assert value(samples, "carrieropt_sessions", status="succeeded", trigger=session.trigger) == 1

    # Each finished stage once in its histogram, with the seconds stored on the session.
    timed = {stage: t["seconds"] for stage, t in session.stage_timings.items() if "seconds" in t}
    assert {"sync", "grouping", "optimizing", "finalizing"} <= set(timed)
    for stage, seconds in timed.items():
        assert value(samples, "carrieropt_session_stage_duration_seconds_count", stage=stage) == 1
        assert value(samples, "carrieropt_session_stage_duration_seconds_sum", stage=stage) == pytest.approx(seconds)
        inf = value(samples, "carrieropt_session_stage_duration_seconds_bucket", stage=stage, le="+Inf")
        assert inf == 1
    assert value(samples, "carrieropt_session_duration_seconds_sum", status="succeeded") == pytest.approx(
        (session.finished_at - session.started_at).total_seconds())

    labels = {**who, "session": session.guid}
    assert value(samples, "carrieropt_last_session_devices", **labels) == session.device_count > 0
    assert value(samples, "carrieropt_last_session_savings", **labels) == pytest.approx(float(session.savings))
    assert value(samples, "carrieropt_last_session_optimized_cost", **labels) == pytest.approx(
        float(session.optimized_cost))

    # Calls by endpoint and outcome: what the table holds, and in all what the sync runs counted themselves
    # plus the push's reads and writes; the scripted 429 and 500 are there.
    calls = {(ls["endpoint"], ls["outcome"]): v for ls, v in samples["carrieropt_carrier_calls_total"]
             if ls["provider_id"] == str(provider.pk)}
    stored = {(r.endpoint, r.outcome): r.calls for r in CarrierCallCount.objects.filter(provider=provider)}
    assert calls == stored
    assert calls[("list_devices", "throttled")] == 1 and calls[("list_devices", "http_500")] == 1
    by_endpoint = Counter()
    for (endpoint, _), n in calls.items():
        by_endpoint[endpoint] += n
    runs = list(SyncRun.objects.filter(provider=provider, status="succeeded"))
    push_endpoints = ("get_device", "change_rate_plan")  # the push's reads and writes; every other call was a sync's
    # The device sync also reads each new SIM's details once (its customer): those get_device calls are the sync's.
    customer_reads = sum(r.calls for r in runs) - sum(n for endpoint, n in by_endpoint.items()
                                                       if endpoint not in push_endpoints)
    assert customer_reads == min(300, settings.DEVICE_SYNC_CUSTOMER_READS) <= by_endpoint["get_device"]
    assert by_endpoint["change_rate_plan"] == calls[("change_rate_plan", "ok")] == 12
    for run in runs:
        assert value(samples, "carrieropt_sync_calls_per_second", kind=run.kind, **who) == pytest.approx(
            run.calls / run.duration_seconds)

    # The push: its changes by outcome, and it is over.
    assert value(samples, "carrieropt_push_info", push_id=push.pk, status="succeeded", **who) == 1
    for status, n in Counter(RatePlanChange.objects.filter(push=push).values_list("status", flat=True)).items():
        assert value(samples, "carrieropt_push_changes", push_id=push.pk, status=status, **who) == n
    assert value(samples, "carrieropt_push_changes", push_id=push.pk, status="applied", **who) == 12
    assert "carrieropt_push_remaining_minutes_needed" not in samples  # only while a push runs

    # Nothing was delivered (no webhook while the session ran): the backlog is every event.
    undelivered = ProgressEvent.objects.filter(delivered_at__isnull=True)
    assert value(samples, "carrieropt_webhook_backlog") == undelivered.count() > 0
    # Its age as of the scrape: between the ages just before and just after it, however slow the machine is.
    oldest = min(e.created_at for e in undelivered)
    age = value(samples, "carrieropt_webhook_oldest_undelivered_age_seconds")
    assert (before - oldest).total_seconds() - 1e-6 <= age <= (after - oldest).total_seconds() + 1e-6


@pytest.mark.django_db
def test_a_stuck_session_shows_its_age_and_no_webhook_metrics_without_a_webhook(client, settings, completed_session,
                                                                              provider_a):
    settings.METRICS_TOKEN = TOKEN
    settings.AMOP_WEBHOOK_URL = ""
    session = completed_session(provider=provider_a, groups=1, sims_per_group=2)
    created = timezone.now() - dt.timedelta(hours=5)
    OptimizationSession.objects.filter(pk=session.pk).update(status="running", stage="optimizing", created_at=created,
                                                              stage_heartbeat_at=created)
    samples = scrape(client)
    age = value(samples, "carrieropt_active_session_age_seconds", provider_id=provider_a.pk, stage="optimizing")
    assert age == pytest.approx(5 * 3600, abs=60)
    assert "carrieropt_webhook_backlog" not in samples
    assert "carrieropt_last_session_devices" not in samples  # its only session is no longer a succeeded one
