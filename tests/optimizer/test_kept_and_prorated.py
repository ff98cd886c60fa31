"""SIMs that cannot move (pinned, or deactivated this cycle) keep their plan and count in the totals; SIMs active
part of the cycle are priced pro rata on accounts that prorate (cost-model.md days_active)."""
import datetime as dt
from decimal import Decimal

import pytest

from devices.models import Device, DevicePin, DeviceUsage
from optimizer.models import DeviceAssignment
from rateplans.models import RatePlan
from rateplans.services import billing_period_current
from sessions.models import OptimizationSession
from sessions.services import session_start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.demo(devices=400, seed=21)]


def run(provider):
    session = session_start(provider=provider, sync_devices=False)
    return OptimizationSession.objects.get(pk=session.pk)


def test_pinned_sims_keep_their_plan_and_the_rest_is_still_optimized(inline_tasks, demo):
    first = run(demo.provider)
    movers = list(DeviceAssignment.objects.filter(run=first.run, changed=True, kept_reason="")
                  .order_by("iccid")[:6].values_list("device_id", "iccid"))
    assert len(movers) == 6
    for device_id, _ in movers:
        DevicePin.objects.create(device_id=device_id, reason="customer contract")
    second = run(demo.provider)
    assert second.status == "succeeded", second.error
    kept = DeviceAssignment.objects.filter(run=second.run, device_id__in=[d for d, _ in movers])
    assert kept.count() == 6 and set(kept.values_list("kept_reason", flat=True)) == {"pinned"}
    assert not kept.filter(changed=True).exists()
    assert all(a.recommended_plan_id == a.current_plan_id and a.current_cost == a.recommended_cost for a in kept)
    # Their cost is in the totals; the others still move, and the pins cost something (or nothing), never save.
    assert second.device_count == first.device_count
    assert DeviceAssignment.objects.filter(run=second.run, changed=True).count() > 0
    assert second.optimized_cost >= first.optimized_cost and second.current_cost == first.current_cost


def test_sims_deactivated_this_cycle_are_billed_and_kept_older_ones_are_not(inline_tasks, demo):
    period = billing_period_current(provider=demo.provider)
    stopped = list(Device.objects.filter(provider=demo.provider, status="DEACTIVATED").order_by("iccid")
                   .values_list("pk", flat=True))
    this_cycle, earlier = set(stopped[:4]), set(stopped[4:])
    assert earlier
    Device.objects.filter(pk__in=this_cycle).update(deactivated_at=period.starts_at() + dt.timedelta(minutes=1))
    Device.objects.filter(pk__in=earlier).update(deactivated_at=period.starts_at() - dt.timedelta(days=3))
    session = run(demo.provider)
    rows = DeviceAssignment.objects.filter(run=session.run)
    kept = rows.filter(device_id__in=this_cycle)
    assert kept.count() == len(this_cycle) and not kept.filter(changed=True).exists()
    assert set(kept.exclude(kept_reason="no_usage").values_list("kept_reason", flat=True)) == {"stopped"}
    assert not rows.filter(device_id__in=earlier).exists()


def test_a_sim_activated_mid_cycle_pays_its_days_only_when_the_account_prorates(inline_tasks, demo):
    provider = demo.provider
    period = billing_period_current(provider=provider)
    # A SIM kept alone on a 100 MB plan without pooling, using under 50 MB: it pays the recurring charge only.
    plan = RatePlan.objects.get(provider=provider, code="M2M-100MB")
    usage = DeviceUsage.objects.filter(billing_period=period, device__status="ACTIVATED", projected_mb__lt=50,
                                       device__provider=provider, device__pin__isnull=True).order_by("device__iccid").first()
    row = usage.device
    Device.objects.filter(pk=row.pk).update(rate_plan=plan, rate_plan_code=plan.code)
    DevicePin.objects.create(device=row, reason="measure proration")
    start = dt.datetime.combine(period.start_date + dt.timedelta(days=10), dt.time(12), tzinfo=provider.tz)
    Device.objects.filter(pk=row.pk).update(date_activated=start)
    factor = Decimal(period.days_in_cycle - 10) / period.days_in_cycle

    prorated = DeviceAssignment.objects.get(run=run(provider).run, device_id=row.pk)
    assert abs(prorated.current_cost - (factor * plan.monthly_cost + plan.fee_per_sim)) < Decimal("0.0001")
    provider.prorates = False
    provider.save()
    full = DeviceAssignment.objects.get(run=run(provider).run, device_id=row.pk)
    assert full.current_cost == plan.monthly_cost + plan.fee_per_sim


def test_a_pinned_sim_without_a_current_plan_fails_the_session_naming_it(inline_tasks, demo):
    device = Device.objects.filter(provider=demo.provider, status="ACTIVATED", pin__isnull=True).order_by("iccid").first()
    DevicePin.objects.create(device=device, reason="customer contract")
    Device.objects.filter(pk=device.pk).update(rate_plan=None)
    session = run(demo.provider)
    assert session.status == "failed"
    assert device.iccid in session.error and "no current rate plan" in session.error
