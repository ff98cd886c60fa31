"""demo_summary: beside the savings, how many SIMs were priced with usage, kept without usage data, pinned."""
import io
from decimal import Decimal

import pytest
from django.core.management import call_command

from devices.models import DevicePin
from optimizer.models import DeviceAssignment
from sessions.models import OptimizationSession
from sessions.services import session_start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.demo(devices=500, seed=7)]


def test_the_summary_prints_coverage_and_pins_beside_the_savings(inline_tasks, demo):
    session = session_start(provider=demo.provider, sync_devices=False)
    session = OptimizationSession.objects.get(pk=session.pk)
    out = io.StringIO()
    call_command("demo_summary", stdout=out)
    text = out.getvalue()
    pinned = DevicePin.objects.filter(device__provider=demo.provider).count()
    stopped = DeviceAssignment.objects.filter(run=session.run, kept_reason="stopped").count()
    assert pinned == 3 and session.no_usage_count > 0
    assert f"savings            {session.savings:,.2f} of {session.current_cost:,.2f}" in text
    assert (f"SIMs priced        {session.device_count:,}: {session.sims_with_usage:,} with usage, "
            f"{session.no_usage_count:,} without usage data (kept on their plan), {pinned} pinned, "
            f"{stopped} deactivated this cycle (kept)") in text


@pytest.mark.demo(devices=300, seed=7, second_devices=80)
def test_the_summary_prints_the_carrier_and_the_cross_provider_result(inline_tasks, demo):
    from django.core.management import call_command as run

    from carrieropt.money import cents
    from devices.models import Customer
    from sessions.models import Scope

    assert demo.second_provider is not None and demo.tenant.cross_provider_enabled
    carrier = session_start(provider=demo.provider, sync_devices=False)
    northwind = Customer.objects.get(tenant=demo.tenant, name="Northwind Freight")
    started = io.StringIO()
    run("optimize", scope=Scope.CROSS_PROVIDER, customer=northwind.pk, no_sync=True, stdout=started)
    cross = OptimizationSession.objects.get(scope=Scope.CROSS_PROVIDER, parent=None)
    assert cross.is_complete, cross.error
    assert f"started for Northwind Freight on {demo.provider.name}, {demo.second_provider.name}" in started.getvalue()
    out = io.StringIO()
    call_command("demo_summary", stdout=out)
    text = out.getvalue()
    carrier = OptimizationSession.objects.get(pk=carrier.pk)
    # The carrier result is the carrier session's (not the later customer sessions of the same account).
    assert f"last session       {carrier.guid} {carrier.status}" in text
    assert f"cross-provider     {cross.guid} {cross.status}" in text
    for account in cross.comparison["accounts"]:
        line = next(line for line in text.splitlines() if line.strip().startswith(account["provider_name"][:34]))
        assert f"{account['sims']:,}" in line and f"{cents(Decimal(account['fleet_cost'])):,.2f}" in line
    assert "<- cheapest for the fleet" in text
