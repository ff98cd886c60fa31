"""seed_demo: a realistic tenant, idempotent, and the same SIMs the simulator serves for the same seed."""
import io
from decimal import Decimal

from django.conf import settings
from django.core.management import call_command

from carriers.simulator.testing import running_simulator
from devices.demo import DEMO_PROVIDER, DEMO_SECOND_MONTHLY_FACTOR, DEMO_SECOND_PROVIDER, DEMO_SECOND_SEED_OFFSET
from devices.models import Customer, Device, DeviceUsage
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


def test_the_second_account_is_the_next_seeds_fleet_with_the_same_customers_and_its_own_prices(db):
    call_command("seed_demo", devices=400, seed=9, second_devices=120, stdout=io.StringIO())
    first = ServiceProvider.objects.get(name=DEMO_PROVIDER)
    second = ServiceProvider.objects.get(name=DEMO_SECOND_PROVIDER)
    assert second.tenant_id == first.tenant_id and second.tenant.cross_provider_enabled
    assert second.api_base_url == settings.SIMULATOR_SECOND_URL
    with running_simulator(sims=120, seed=9 + DEMO_SECOND_SEED_OFFSET) as server:
        served = server.carrier.snapshot()
        customers = server.carrier.customers()
    stored = {i: (s, r, c) for i, s, r, c in Device.objects.filter(provider=second)
              .values_list("iccid", "status", "rate_plan__code", "communication_plan__name")}
    assert served == stored and not set(stored) & set(Device.objects.filter(provider=first).values_list("iccid", flat=True))
    # The same customers (one row each for the tenant) have SIMs on both accounts, as each simulator names them.
    assert dict(Device.objects.filter(provider=second, customer__isnull=False).values_list("iccid", "customer__name")) \
        == {i: c for i, c in customers.items() if c}
    on_both = set(Customer.objects.filter(devices__provider=first).filter(devices__provider=second)
                  .values_list("name", flat=True))
    assert "Northwind Freight" in on_both and Customer.objects.filter(tenant=first.tenant).count() == 3
    # Same plans, another price list: a cheaper recurring charge, dearer overage.
    price = {(p.provider_id, p.code): p for p in RatePlan.objects.filter(provider__in=[first, second])}
    for (provider_id, code), plan in price.items():
        if provider_id == second.pk:
            mine = price[(first.pk, code)]
            assert plan.monthly_cost == (mine.monthly_cost * DEMO_SECOND_MONTHLY_FACTOR).quantize(Decimal("0.0001"))
            assert plan.overage_rate > mine.overage_rate
    # Idempotent, and without --second-devices the second account is a quarter of the first.
    call_command("seed_demo", devices=400, seed=9, second_devices=120, stdout=io.StringIO())
    assert Device.objects.filter(provider=second).count() == 120
    call_command("seed_demo", devices=400, seed=9, stdout=io.StringIO())
    assert Device.objects.filter(provider=second).count() == 100
