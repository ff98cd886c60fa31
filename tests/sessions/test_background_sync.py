"""A session after the daily background sync only tops up the usage older than USAGE_MAX_AGE_HOURS, and the
background sync never runs beside a session of the account."""
import datetime as dt

import pytest
from django.utils import timezone

from devices import tasks
from devices.models import DeviceUsage, SyncRun
from devices.testing import billed, simulated_provider
from sessions.models import OptimizationSession
from sessions.services import session_start

pytestmark = pytest.mark.django_db(transaction=True)


def usage_asked(server) -> set[str]:
    return {r["path"].split("/")[-2] for r in server.carrier.request_log("/rws/api/v1/devices/")
            if r["path"].endswith("/ctdUsages")}


def test_a_session_after_the_background_sync_asks_only_for_stale_usage(inline_tasks, tenant, carrier_simulator,
                                                                      settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    assert "succeeded" in tasks.background_sync(provider.pk)
    stored = DeviceUsage.objects.filter(device__provider=provider)
    assert stored.count() > 100
    stale = set(stored.order_by("pk")[:25].values_list("device__iccid", flat=True))
    stored.filter(device__iccid__in=stale).update(synced_at=timezone.now() - dt.timedelta(hours=30))
    never = billed(provider) - set(stored.values_list("device__iccid", flat=True))  # the carrier has none for them
    carrier_simulator.carrier.clear_log()

    session = OptimizationSession.objects.get(pk=session_start(provider=provider).pk)

    assert session.status in ("succeeded", "succeeded_with_warnings"), session.error
    usage_run = SyncRun.objects.filter(provider=provider, kind="usage", background=False).get()
    # Asked again (paged or one by one): the stale SIMs, and those the carrier has no usage for; no other.
    refreshed = set(stored.filter(synced_at=usage_run.started_at).values_list("device__iccid", flat=True))
    assert refreshed == stale and usage_asked(carrier_simulator) <= stale | never
    assert usage_run.devices_seen == len(stale | never)
    # Every billable SIM with usage is priced with fresh usage: none of the stale rows is left stale.
    assert not stored.filter(device__iccid__in=stale, synced_at__lt=timezone.now() - dt.timedelta(hours=24)).exists()
    assert session.sims_with_usage == stored.filter(device__iccid__in=billed(provider)).count()


def test_the_background_sync_is_refused_while_a_session_of_the_account_runs(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    session = session_start(provider=provider)  # tasks are not run: it stays pending
    outcome = tasks.background_sync(provider.pk)
    assert f"session {session.pk} of this account is running" in outcome
    assert carrier_simulator.carrier.request_log() == []
