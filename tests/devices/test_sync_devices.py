"""`manage.py sync_devices`: device and usage sync against the simulator, counted progress, clear failures."""
import io

import pytest
from django.core.management import CommandError, call_command

from devices.models import Device, DeviceUsage, SyncRun, billed_in_cycle
from devices.testing import simulated_provider
from rateplans.services import billing_period_current


def run_command(*args) -> str:
    out = io.StringIO()
    call_command("sync_devices", *args, stdout=out)
    return out.getvalue()


def test_sync_devices_syncs_devices_and_usage_with_counted_progress(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=600, seed=3)
    provider = simulated_provider(server=server, tenant=tenant)
    output = run_command("--provider", str(provider.pk))
    # Not a TTY: counted lines instead of a bar, every 100 pages and every 10 % of the usage calls.
    assert "devices: 1 pages, 50 SIMs seen, 0 retries" in output and output.count("devices: ") == 1
    # Asked: every ACTIVATED SIM and each deactivated during this cycle (billed for it).
    period = billing_period_current(provider=provider)
    billed = Device.objects.filter(billed_in_cycle(cycle_start=period.starts_at()), provider=provider)
    activated = billed.count()
    assert activated > sum(1 for s, _, _ in server.carrier.snapshot().values() if s == "ACTIVATED")
    # Paged usage (50 SIMs a call) moves in steps of a page: a line at most every 10 %, and the last.
    assert f"usage: {activated:,}/{activated:,} SIMs" in output and 6 <= output.count("usage: ") <= 12
    assert f"Device sync #{SyncRun.objects.get(kind='full').pk} (full) of {provider.name!r}: 12 pages, 600 SIMs seen, " \
           f"600 added" in output
    assert "Usage sync #" in output and "skipped by status" in output
    assert Device.objects.filter(provider=provider).count() == 600
    assert DeviceUsage.objects.filter(device__provider=provider).count() == billed.count()


def test_no_usage_and_full_flags(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    run_command("--provider", str(provider.pk), "--no-usage")
    assert run_command("--provider", str(provider.pk), "--no-usage", "--full").count("(full)") == 1
    assert not SyncRun.objects.filter(kind="usage").exists()
    assert list(SyncRun.objects.order_by("pk").values_list("kind", flat=True)) == ["full", "full"]


def test_failure_is_a_clear_error_and_a_nonzero_exit(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant, api_key="sk-wrong-secret-0001")
    with pytest.raises(CommandError) as exc:
        run_command("--provider", str(provider.pk))
    message = str(exc.value)
    assert message.startswith(f"Device sync #{SyncRun.objects.get().pk} of {provider.name!r} failed after 0 pages")
    assert "refused username 'demo-api-user'" in message and "Device table unchanged." in message
    assert "sk-wrong-secret-0001" not in message


def test_unknown_provider_is_named(db):
    with pytest.raises(CommandError, match="--provider 999999: no carrier account with this id"):
        run_command("--provider", "999999")
