"""A bad carrier day: 3,000 SIMs (60 device-list pages, a usage call per billed SIM) through 20 % transient
faults (5xx, hangs, truncated JSON) and pages that repeat SIMs; the device and usage syncs complete with every SIM
exactly once, and the breaker, which counts only calls that failed for good, stays closed. (Throttling is left out
here: the client rightly slows the account to its floor rate when a fifth of its calls are throttled, which would
make this test minutes long; it has its own tests in test_error_model.py.)"""
from django.test import TestCase

from carriers.simulator import Faults
from devices.models import Device, DeviceUsage
from devices.services import device_sync, usage_sync
from devices.testing import billed, fast_client, simulated_provider


def test_three_thousand_sims_through_twenty_percent_faults_malformed_pages_and_duplicates(tenant, carrier_simulator_factory):
    faults = Faults(error_rate=0.2, fault_kinds=("500", "timeout", "malformed"), hang_seconds=0.3,
                    duplicate_across_pages=True)
    server = carrier_simulator_factory(sims=3_000, seed=23, faults=faults, fault_seed=5)
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=1)
    with fast_client(provider, timeout=0.1, attempts=8, threshold=5) as client, \
            TestCase.captureOnCommitCallbacks(execute=True):
        devices_run = device_sync(provider=provider, client=client)
        usage_run = usage_sync(provider=provider, client=client)
        breaker_failures = client.breaker.recent_failures
    devices_run.refresh_from_db()
    usage_run.refresh_from_db()
    assert devices_run.status == "succeeded", devices_run.error
    assert usage_run.status == "succeeded", usage_run.error
    carrier = server.carrier
    # Every kind of fault happened, on both phases.
    assert all(carrier.counts[k] > 0 for k in ("500", "timeout", "malformed"))
    truncated_pages = sum(1 for r in carrier.request_log("/rws/api/v1/devices") if r["path"].endswith("/devices")
                          and r["status"] == 200 and int(r["query"]["pageNumber"]) <= devices_run.pages) - devices_run.pages
    assert truncated_pages > 0  # device-list pages answered with broken JSON, read again
    assert devices_run.duplicates > 0 and devices_run.rejected == 0
    assert devices_run.inserted == Device.objects.filter(provider=provider).count() == 3_000
    assert {d: (s, p, c) for d, s, p, c in Device.objects.filter(provider=provider).values_list(
        "iccid", "status", "rate_plan_code", "communication_plan_name")} == carrier.snapshot()
    active = billed(provider)
    got = list(DeviceUsage.objects.filter(device__provider=provider).values_list("device__iccid", flat=True))
    assert len(got) == len(set(got)) == len(active) and set(got) == active
    assert usage_run.rejected == 0 and usage_run.retries > 0.15 * (usage_run.calls - usage_run.retries)
    assert breaker_failures == 0  # thousands of failed attempts, no call failed for good
