"""AMOP's start: its own session GUID (the same GUID twice is the same session) and a billing period of its choosing."""
import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from devices.models import DeviceUsage
from optimizer.models import DeviceAssignment
from rateplans.models import BillingPeriod
from rateplans.services import billing_period_current
from sessions import services, tasks
from sessions.models import OptimizationSession, Stage
from tests import factories
from tests.factories_results import fleet_seed


def start(api, provider, **body):
    return api.post(reverse("api:session-list"), {"provider": provider.pk, **body}, content_type="application/json")


def test_the_same_guid_twice_is_the_same_session(api, provider_a):
    guid = str(uuid.uuid4())
    first = start(api, provider_a, session_guid=guid, sync_devices=False)
    assert first.status_code == 201, first.content
    assert first.json()["id"] == guid
    sent = len(mail.outbox)

    again = start(api, provider_a, session_guid=guid, sync_devices=False)
    assert again.status_code == 200, again.content
    assert again.json()["id"] == guid and again.json()["session_id"] == first.json()["session_id"]
    assert OptimizationSession.objects.filter(provider=provider_a).count() == 1
    assert len(mail.outbox) == sent, "a repeated start is not an 'already running' incident"

    OptimizationSession.objects.filter(guid=guid).update(status="succeeded", stage="complete", progress=100)
    ended = start(api, provider_a, session_guid=guid, sync_devices=False)
    assert ended.status_code == 200 and ended.json()["status"] == "succeeded", "whatever became of it"

    other = start(api, provider_a, sync_devices=False)
    assert other.status_code == 201 and other.json()["id"] != guid, "without a GUID a start is a new session"


def test_the_same_guid_with_another_account_or_other_options_is_a_409(api, provider_a, tenant_a, provider_b):
    second = factories.ServiceProviderFactory(tenant=tenant_a, name="Alice Second")
    guid = str(uuid.uuid4())
    assert start(api, provider_a, session_guid=guid, charge_type="rate").status_code == 201

    response = start(api, second, session_guid=guid)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "session_guid_conflict" and "session_guid" in error["fields"]
    assert "already names a session of another carrier account" in error["message"]

    response = start(api, provider_a, session_guid=guid, charge_type="overage")
    assert response.status_code == 409 and "started with other charge_type" in response.json()["error"]["message"]
    assert OptimizationSession.objects.count() == 1

    foreign = services.session_start(provider=provider_b, guid=uuid.uuid4())
    response = start(api, provider_a, session_guid=str(foreign.guid))
    assert response.status_code == 409 and "Bob" not in response.content.decode(), "another tenant's session stays hidden"


def test_a_concurrent_start_with_the_same_guid_finds_the_session_not_a_refusal(provider_a):
    guid = uuid.uuid4()
    # As if the look-up of both starts ran before either insert: the second meets the first's row.
    first = services.session_start(provider=provider_a, guid=guid)
    sent = len(mail.outbox)
    with pytest.raises(services._GuidTaken) as taken:
        services.session_start(provider=provider_a, guid=guid)
    assert taken.value.session.pk == first.pk and len(mail.outbox) == sent


def test_a_period_the_account_lacks_is_a_404_one_not_started_a_409_both_ways_a_400(api, provider_a, tenant_a, provider_b):
    foreign = billing_period_current(provider=provider_b)
    response = start(api, provider_a, billing_period=foreign.pk)  # another tenant's: it does not exist for alice
    assert response.status_code == 404 and list(response.json()["error"]["fields"]) == ["billing_period"]

    second = factories.ServiceProviderFactory(tenant=tenant_a, name="Alice Second")
    sibling = billing_period_current(provider=second)
    response = start(api, provider_a, billing_period=sibling.pk)
    assert response.status_code == 404  # not a period of the account the start is for
    assert "is not a billing period of 'Alice Jasper'" in response.json()["error"]["fields"]["billing_period"][0]

    current = billing_period_current(provider=provider_a)
    response = start(api, provider_a, billing_period_end=(current.end_date - dt.timedelta(days=3)).isoformat())
    assert response.status_code == 404  # no period of the account ends that day
    message = response.json()["error"]["fields"]["billing_period_end"][0]
    assert "is not the last day of a billing cycle" in message and current.end_date.isoformat() in message

    future = current.end_date + dt.timedelta(days=40)
    nxt = BillingPeriod.objects.create(provider=provider_a, start_date=current.end_date + dt.timedelta(days=1),
                                       end_date=future)
    response = start(api, provider_a, billing_period=nxt.pk)
    assert response.status_code == 409 and "has not started" in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "billing_period_unavailable"

    both = start(api, provider_a, billing_period=current.pk, billing_period_end=current.end_date.isoformat())
    assert both.status_code == 400 and "not both" in both.json()["error"]["message"]
    assert not OptimizationSession.objects.exists()


def test_the_schema_says_a_start_names_its_period_one_way_at_most(client, db):
    """The 400 for billing_period with billing_period_end is in the contract, so a schema-valid start is accepted."""
    body = client.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]["SessionStartIn"]
    assert {"not": {"required": ["billing_period", "billing_period_end"]}} in body["allOf"]
    assert body["additionalProperties"] is False
    # And what each scope needs (tests/sessions/test_scopes.py: the 400s for the rest).
    carrier, customer, cross = next(rule for rule in body["allOf"] if "anyOf" in rule)["anyOf"]
    assert carrier["required"] == ["provider"] and carrier["not"] == {"required": ["customer"]}
    assert customer["required"] == ["scope", "provider", "customer"]
    assert cross["required"] == ["scope", "customer"] and {"required": ["provider"]} in cross["not"]["anyOf"]


def test_an_ended_period_is_optimized_on_its_stored_usage_never_synced(api, provider_a):
    devices = fleet_seed(provider=provider_a, groups=1, sims_per_group=5)
    current = billing_period_current(provider=provider_a)
    last = billing_period_current(provider=provider_a, at=timezone.now() - dt.timedelta(days=current.days_in_cycle + 1))
    assert last.end_date < current.start_date
    for i, device in enumerate(devices):
        DeviceUsage.objects.create(device=device, billing_period=last, projected_mb=Decimal(100 + i), usage_mb=Decimal(100 + i))

    refused = start(api, provider_a, billing_period_end=last.end_date.isoformat())
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "billing_period_unavailable"
    assert "has ended" in refused.json()["error"]["message"] and "sync_devices false" in refused.json()["error"]["message"]

    response = start(api, provider_a, billing_period_end=last.end_date.isoformat(), sync_devices=False)
    assert response.status_code == 201, response.content
    assert response.json()["billing_period"]["id"] == last.pk
    session = OptimizationSession.objects.get(guid=response.json()["id"])
    for stage in (Stage.START, Stage.SYNC, Stage.GROUPING, Stage.QUEUEING):
        tasks.run_stage(session.pk, stage)
    for queue_id in session.run.queues.values_list("pk", flat=True):
        tasks.run_work_item(queue_id)
    tasks.run_stage(session.pk, Stage.FINALIZING)
    session.refresh_from_db()
    assert session.status == "succeeded", session.error
    usage = sorted(DeviceAssignment.objects.filter(run=session.run).values_list("usage_mb", flat=True))
    assert usage == [Decimal(100 + i) for i in range(5)], "priced on that period's usage, not the current one's"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_starts_with_one_guid_are_one_session_and_no_refusal(provider_a):
    import threading

    from django.db import connection

    guid, barrier, outcomes = uuid.uuid4(), threading.Barrier(20), []

    def start_once():
        try:
            barrier.wait()
            session, created = services.session_start_once(guid=guid, provider=provider_a, sync_devices=False)
            outcomes.append(("created" if created else "same", session.guid))
        except Exception as exc:  # noqa: BLE001 — any other outcome is the failure under test
            outcomes.append((f"error: {exc!r}", None))
        finally:
            connection.close()

    threads = [threading.Thread(target=start_once) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o for o, _ in outcomes) == ["created"] + ["same"] * 19
    assert {g for _, g in outcomes} == {guid}
    assert OptimizationSession.objects.filter(provider=provider_a).count() == 1
    assert mail.outbox == [], "no 'already running' e-mail for repeats of one start"
