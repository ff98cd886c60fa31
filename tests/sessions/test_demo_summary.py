"""demo_summary: beside the savings, how many SIMs were priced with usage, kept without usage data, pinned."""
import io

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
