"""seed_demo: a realistic tenant, idempotent, and the same SIMs the simulator serves for the same seed."""
import io
from decimal import Decimal

from django.core.management import call_command

from carriers.simulator.testing import running_simulator
from devices.demo import DEMO_PROVIDER
from devices.models import Device, DeviceUsage
from rateplans.models import CommunicationPlan, RatePlan, ServiceProvider


def seed(devices, seed_=7):
    call_command("seed_demo", devices=devices, seed=seed_, stdout=io.StringIO())
    return ServiceProvider.objects.get(name=DEMO_PROVIDER)


def snapshot(provider):
    return (
        sorted(Device.objects.filter(provider=provider).values_list("iccid", "status", "rate_plan__code", "communication_plan__name")),
        sorted(DeviceUsage.objects.filter(device__provider=provider).values_list("device__iccid", flat=True)),
        RatePlan.objects.filter(provider=provider).count(), CommunicationPlan.objects.filter(provider=provider).count(),
    )


def projections(provider):
    return dict(DeviceUsage.objects.filter(device__provider=provider).values_list("device__iccid", "projected_mb"))


def test_seed_makes_a_realistic_catalogue_and_fleet(db):
    provider = seed(2_000)
    plans = RatePlan.objects.filter(provider=provider)
    assert plans.count() == 12 and plans.filter(pooled=True).exists() and plans.filter(pooled=False).exists()
    assert plans.order_by("included_mb").first().included_mb == 1 and plans.order_by("included_mb").last().included_mb == 10240
    assert CommunicationPlan.objects.filter(provider=provider).count() == 3
    assert Device.objects.filter(provider=provider).count() == 2_000
    usage = sorted(float(u) for u in DeviceUsage.objects.filter(device__provider=provider).values_list("projected_mb", flat=True))
    # Heavy-tailed: the top 1 % of SIMs use far more than the median one.
    assert usage[int(0.99 * len(usage))] > 20 * usage[len(usage) // 2]
    # Current plans are allowed by each SIM's communication plan.
    for device in Device.objects.filter(provider=provider).select_related("communication_plan")[:200]:
        assert device.communication_plan.rate_plans.filter(pk=device.rate_plan_id).exists()


def test_seed_twice_changes_nothing(db):
    provider = seed(1_500)
    before, usage_before = snapshot(provider), projections(provider)
    assert snapshot(seed(1_500)) == before
    # Cycle-to-date usage is measured "now", so the projection may move by rounding, not more.
    for iccid, projected in projections(provider).items():
        assert abs(projected - usage_before[iccid]) <= max(Decimal("0.002"), usage_before[iccid] / 100)


def test_seed_serves_the_same_sims_as_the_simulator_for_the_same_seed(db):
    provider = seed(300, 9)
    with running_simulator(sims=300, seed=9) as server:
        served = server.carrier.snapshot()  # iccid -> (status, rate plan, communication plan)
    stored = {i: (s, r, c) for i, s, r, c in Device.objects.filter(provider=provider)
              .values_list("iccid", "status", "rate_plan__code", "communication_plan__name")}
    assert served == stored
