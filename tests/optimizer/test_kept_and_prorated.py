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


@pytest.mark.django_db
def test_days_billed_from_the_database_match_the_cost_model_sim_by_sim(demo):
    """group_data reads the activation and deactivation days in the account's time zone from the database and
    counts days_active for all SIMs at once: the same days as days_active gives one SIM at a time, around
    midnight in the account's zone (which is not UTC) and at both ends of the cycle."""
    import numpy as np

    from optimizer.selectors import days_active, days_active_days, group_data
    from optimizer.services import comm_groups_build

    provider = demo.provider
    provider.prorates = True
    provider.save()
    period = billing_period_current(provider=provider)
    tz = provider.tz
    start = dt.datetime.combine(period.start_date, dt.time(), tzinfo=tz)
    moments = [start - dt.timedelta(days=3), start - dt.timedelta(minutes=1), start, start + dt.timedelta(minutes=1),
               start + dt.timedelta(days=9, hours=23, minutes=59), start + dt.timedelta(days=10, hours=0, minutes=1),
               dt.datetime.combine(period.end_date, dt.time(23, 59), tzinfo=tz)]
    devices = list(Device.objects.filter(provider=provider, status="ACTIVATED").order_by("pk")[: len(moments) * 3])
    for i, device in enumerate(devices):
        device.date_activated = moments[i % len(moments)]
        if i % 3 == 1:  # stopped this cycle, some of them before their activation day
            device.status, device.deactivated_at = "DEACTIVATED", moments[(i * 5) % len(moments)] + dt.timedelta(days=2)
        device.save()
    session = session_start(provider=provider, sync_devices=False)
    run = OptimizationSession.objects.get(pk=session.pk).run
    comm_groups_build(run=run)
    checked = 0
    for group in run.comm_groups.all():
        data = group_data(group=group)
        by_id = dict(zip(data.device_ids.tolist(), data.problem.factors.tolist(), strict=True))
        for device in Device.objects.filter(pk__in=list(by_id)):
            stopped = device.deactivated_at if device.status != "ACTIVATED" else None
            expected = days_active(period=period, tz=tz, activated=device.date_activated, stopped=stopped)
            assert by_id[device.pk] * period.days_in_cycle == pytest.approx(expected), device.iccid
            checked += 1
    assert checked > len(devices)
    # and the arrays alone, with days outside the cycle on both sides
    days = days_active_days(period=period, activated=[None, period.start_date - dt.timedelta(days=4), period.end_date],
                            stopped=[period.start_date, None, period.start_date])
    assert days.tolist() == [1.0, float(period.days_in_cycle), 0.0] and days.dtype == np.float64
