"""Usage sync over real sockets: ctdUsages per SIM into DeviceUsage, all or nothing, only SIMs worth asking about."""
import datetime as dt
import time
from decimal import Decimal

import pytest
from django.utils import timezone

from carriers.simulator import Faults
from devices.models import DeviceUsage, SyncRun
from devices.services import device_sync, usage_sync
from devices.testing import fast_client, simulated_provider
from devices.usage import bytes_to_mb, projected_mb
from rateplans.services import billing_period_current
from tests import factories

pytest_plugins = ["carriers.simulator.fixtures"]  # carrier_simulator, carrier_simulator_factory


@pytest.fixture
def tenant(db):
    return factories.TenantFactory(name="Usage Co", slug="usage-co")


def synced_provider(server, tenant, **fields):
    provider = simulated_provider(server=server, tenant=tenant, **fields)
    with fast_client(provider) as client:
        assert device_sync(provider=provider, client=client).status == "succeeded"
    return provider


def usage(provider, *, timeout=0.25, attempts=5, **kwargs) -> SyncRun:
    with fast_client(provider, timeout=timeout, attempts=attempts) as client:
        run = usage_sync(provider=provider, client=client, **kwargs)
    run.refresh_from_db()
    return run


def rows(provider):
    return {u.device.iccid: u for u in DeviceUsage.objects.filter(device__provider=provider).select_related("device")}


def test_usage_of_activated_sims_becomes_mb_and_a_projection(tenant, carrier_simulator_factory):
    frozen = time.time()
    server = carrier_simulator_factory(sims=300, seed=7, clock=lambda: frozen)  # usage as of one instant
    provider = synced_provider(server, tenant)
    run = usage(provider)
    assert (run.kind, run.status, run.error) == ("usage", "succeeded", "")
    statuses = {iccid: s for iccid, (s, _, _) in server.carrier.snapshot().items()}
    activated = {i for i, s in statuses.items() if s == "ACTIVATED"}
    assert (run.devices_seen, run.inserted, run.updated, run.skipped) == (len(activated), len(activated), 0,
                                                                        300 - len(activated))
    assert run.calls == len(activated) and run.retries == 0
    got = rows(provider)
    assert set(got) == activated  # no call spent on SIMs the optimizer does not price
    period = billing_period_current(provider=provider)
    for iccid, row in got.items():
        expected = server.carrier.ctd_bytes(iccid, at=frozen)
        assert row.ctd_bytes == expected and row.billing_period == period
        assert row.usage_mb == Decimal(f"{bytes_to_mb(expected):.3f}")
        assert row.projected_mb == Decimal(f"{projected_mb(bytes_to_mb(expected), status='ACTIVATED', usage_date=row.usage_date, period_start=period.starts_at(), period_end=period.ends_at(), now=row.usage_date):.3f}")
        assert row.projected_mb >= row.usage_mb
    provider.refresh_from_db()
    assert provider.last_usage_sync_at == run.finished_at


def test_a_second_usage_sync_updates_the_same_rows(tenant, carrier_simulator):
    provider = synced_provider(carrier_simulator, tenant)
    first = usage(provider)
    second = usage(provider)
    assert second.inserted == 0 and second.updated == first.inserted > 0
    assert DeviceUsage.objects.filter(device__provider=provider).count() == first.inserted


def test_usage_with_ten_percent_faults_gets_every_sim(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=1_000, seed=5, faults=Faults(error_rate=0.1, hang_seconds=0.5))
    server.carrier.faults.error_rate = 0  # a clean device sync first
    provider = synced_provider(server, tenant)
    server.carrier.faults.error_rate = 0.1
    with fast_client(provider, timeout=0.2, attempts=6) as client:
        run = usage_sync(provider=provider, client=client)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    injected = sum(server.carrier.counts[k] for k in ("500", "429", "timeout"))
    # On a busy machine an answer that was not a fault can still come later than 0.2 s: also retried.
    late = client.stats.timeouts - server.carrier.counts["timeout"]
    assert late >= 0 and injected > 50
    assert run.retries == injected + late
    assert run.calls == run.devices_seen + run.retries
    assert len(rows(provider)) == run.devices_seen == run.inserted


def test_a_carrier_outage_fails_the_run_and_keeps_the_previous_usage(tenant, carrier_simulator):
    provider = synced_provider(carrier_simulator, tenant, max_concurrency=1)
    assert usage(provider).status == "succeeded"
    before = {i: (u.ctd_bytes, u.usage_mb, u.projected_mb, u.usage_date) for i, u in rows(provider).items()}
    carrier_simulator.carrier.faults.script.extend(["ok"] * 40)
    carrier_simulator.carrier.faults.outage = True
    run = usage(provider, attempts=10)
    assert run.status == "failed" and "circuit open after 5 consecutive failures" in run.error
    assert run.error.endswith("DeviceUsage unchanged.") and run.calls == 45
    assert {i: (u.ctd_bytes, u.usage_mb, u.projected_mb, u.usage_date) for i, u in rows(provider).items()} == before


def test_a_sim_the_carrier_no_longer_knows_is_rejected_and_the_rest_written(tenant, carrier_simulator):
    provider = synced_provider(carrier_simulator, tenant)
    factories.DeviceFactory(provider=provider, iccid="8901269999000000009", status="ACTIVATED")
    run = usage(provider)
    assert run.status == "succeeded" and run.rejected == 1
    assert run.rejects[0]["iccid"] == "8901269999000000009"
    assert "does not know ICCID 8901269999000000009" in run.rejects[0]["reason"]
    assert "8901269999000000009" not in rows(provider) and len(rows(provider)) == run.devices_seen - 1


def test_wider_statuses_are_asked_about_when_requested(tenant, carrier_simulator):
    provider = synced_provider(carrier_simulator, tenant)
    run = usage(provider, statuses=["ACTIVATED", "DEACTIVATED", "INVENTORY"])
    assert run.skipped == 0 and run.devices_seen == 200
    deactivated = next(u for u in rows(provider).values() if u.device.status == "DEACTIVATED")
    assert deactivated.projected_mb == deactivated.usage_mb  # the legacy rule: no projection once deactivated


def test_only_the_current_billing_period_can_be_filled(tenant, carrier_simulator):
    provider = synced_provider(carrier_simulator, tenant)
    old = factories.BillingPeriodFactory(provider=provider, start_date=dt.date(2020, 1, 1), end_date=dt.date(2020, 1, 31))
    run = usage(provider, period=old)
    assert run.status == "failed" and run.error.startswith("period: billing period 2020-01-01")
    assert carrier_simulator.carrier.request_log("/rws/api/v1/devices/") == []


def test_usage_sync_refused_while_another_runs(tenant, carrier_simulator):
    provider = synced_provider(carrier_simulator, tenant)
    SyncRun.objects.create(provider=provider, kind="usage", started_at=timezone.now())
    run = usage(provider)
    assert run.status == "failed" and "still running" in run.error
