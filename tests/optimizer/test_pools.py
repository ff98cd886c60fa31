"""Pools as the carrier bills them (ServiceProvider.pooling): per group (the legacy rule), per customer or
account-wide. Groups whose SIMs share a pool are solved together by one work item and finalized together;
what finalize stores is priced by the spec's SIM-by-SIM pricer with those pools, and the run's bound never
exceeds the brute-force optimum."""
import itertools
from decimal import Decimal

import numpy as np
import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from devices.models import Customer, Device, DeviceUsage
from optimizer import services as optimizer_services
from optimizer.engine import Billing, Problem
from optimizer.models import DeviceAssignment, GroupStatus, OptimizationQueue, RunStatus
from optimizer.selectors import ForeignRatePlan, catalogue_from_plans
from rateplans.models import RatePlan
from tests.factories_results import fleet_seed
from tests.optimizer.engine.reference import reference_price
from tests.optimizer.test_services import built

CENT = Decimal("0.01")


def finalized(provider, *, method="certified", must_beat_current=False):
    run = built(provider, method=method)
    if must_beat_current:
        run.must_beat_current = True
        run.save(update_fields=["must_beat_current"])
    for queue_id in optimizer_services.work_items_create(run=run):
        assert optimizer_services.work_item_run(queue_id=queue_id, worker="w1")
    with transaction.atomic():
        totals = optimizer_services.results_finalize(run=run)
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETE_WITH_SUCCESS
    return run, totals


def pool_key(provider, device):
    if provider.pooling == "account":
        return 0
    if provider.pooling == "customer":
        return device.customer_id if device.customer_id is not None else -device.comm_group_pk
    return -device.comm_group_pk


def problem_of_rows(run, *, plan="recommended"):
    """The run's SIMs as one problem from the database (not from the optimizer's arrays), pools by the
    account's rule, and the stored plan of each (recommended or current), for the reference pricer."""
    provider = run.provider
    plans = list(RatePlan.objects.filter(provider=provider).order_by("pk"))
    index = {p.pk: i for i, p in enumerate(plans)}
    groups = list(run.comm_groups.order_by("pk"))
    allowed = np.zeros((len(groups), len(plans)), dtype=bool)
    group_of_comm = {}
    for g, group in enumerate(groups):
        allowed[g, [index[pk] for pk in group.rate_plans.values_list("pk", flat=True)]] = True
        for comm in group.communication_plans.values_list("pk", flat=True):
            group_of_comm[comm] = (g, group.pk)
    usage = dict(DeviceUsage.objects.filter(billing_period=run.billing_period).values_list("device_id", "projected_mb"))
    rows = DeviceAssignment.objects.filter(run=run).order_by("device_id")
    devices = {d.pk: d for d in Device.objects.filter(pk__in=rows.values("device_id"))}
    u, grp, pool, chosen = [], [], [], []
    for row in rows:
        device = devices[row.device_id]
        g, group_pk = group_of_comm[device.communication_plan_id]
        device.comm_group_pk = group_pk
        u.append(float(usage[device.pk]))
        grp.append(g)
        pool.append(pool_key(provider, device))
        chosen.append(index[row.recommended_plan_id if plan == "recommended" else row.current_plan_id])
    problem = Problem(catalogue=catalogue_from_plans(plans), usage_mb=np.array(u), group=np.array(grp), allowed=allowed,
                      billing=Billing(), pool=np.array(pool, dtype=np.int64))
    return problem, np.array(chosen)


def brute_force(problem):
    options = [np.flatnonzero(problem.allowed[g]) for g in problem.group]
    return min(reference_price(problem, a) for a in itertools.product(*options))


def assert_priced_as_billed(run, totals):
    rows = DeviceAssignment.objects.filter(run=run)
    assert rows.aggregate(s=Sum("recommended_cost"))["s"] == totals.optimized_cost
    assert sum(g.optimized_cost for g in run.comm_groups.all()) == totals.optimized_cost
    problem, chosen = problem_of_rows(run)
    assert abs(Decimal(str(reference_price(problem, chosen))) - totals.optimized_cost) < CENT
    problem, current = problem_of_rows(run, plan="current")
    assert abs(Decimal(str(reference_price(problem, current))) - totals.current_cost) < CENT
    assert totals.lower_bound is not None and totals.lower_bound <= totals.optimized_cost <= totals.current_cost
    # The savings-versus-changes frontier prices and bounds the same pools.
    points = run.frontier["points"]
    assert points and all(Decimal(p["lower_bound"]) <= Decimal(p["total_cost"]) for p in points)
    assert min(Decimal(p["total_cost"]) for p in points) >= totals.lower_bound


def test_per_group_pooling_keeps_one_item_per_group(provider_a):
    fleet_seed(provider=provider_a, groups=3, sims_per_group=4)
    run = built(provider_a)
    optimizer_services.work_items_create(run=run)
    assert [q.scope for q in run.queues.order_by("pk")] == [[], [], []]


def test_account_wide_pools_over_three_groups_are_one_item_priced_and_bounded_as_billed(provider_a):
    fleet_seed(provider=provider_a, groups=3, sims_per_group=6)
    provider_a.pooling = "account"
    provider_a.save(update_fields=["pooling"])
    run, totals = finalized(provider_a)
    [item] = OptimizationQueue.objects.filter(run=run)
    groups = list(run.comm_groups.order_by("pk"))
    assert item.scope == [g.pk for g in groups] and item.comm_group_id == groups[0].pk
    assert_priced_as_billed(run, totals)
    for group in groups:
        assert group.lower_bound is None and "solved together" in group.note
        assert group.status == GroupStatus.OPTIMIZED
    assert DeviceAssignment.objects.filter(run=run).count() == totals.devices == 18
    assert groups[0].results.count() <= 1 and not any(g.results.exists() for g in groups[1:])
    # Idempotent: a second finalize stores the same.
    before = list(DeviceAssignment.objects.filter(run=run).order_by("device_id").values_list(
        "device_id", "recommended_plan_id", "recommended_cost"))
    with transaction.atomic():
        assert optimizer_services.results_finalize(run=run) == totals
    assert list(DeviceAssignment.objects.filter(run=run).order_by("device_id").values_list(
        "device_id", "recommended_plan_id", "recommended_cost")) == before


@pytest.mark.parametrize("pooling, optimum, portal_type", [
    ("group", "6.6", "M2M"), ("account", "6.2", "M2M"), ("customer", "6.2", "M2M"), ("account", "6.2", "Mobility")])
def test_the_bound_of_a_scope_is_never_above_the_brute_force_optimum(provider_a, pooling, optimum, portal_type):
    provider_a.portal_type = portal_type  # Mobility pools are priced as billed too
    devices = fleet_seed(provider=provider_a, groups=2, sims_per_group=2)
    north, south = (Customer.objects.create(tenant=provider_a.tenant, name=n) for n in ("North", "South"))
    # One customer in both groups (their pools join), one in the first only, one SIM of none. Apart, the groups
    # pay 2.90 (9 MB on M2M-10MB-POOL, 0 MB on M2M-1MB-POOL) and 3.70 (12 MB alone on M2M-10MB-POOL: 2 blocks);
    # sharing M2M-10MB-POOL the 9 and 12 MB SIMs pay one block: 6.20.
    for device, customer, mb in zip(devices, (north, south, north, None), ("9", "0", "12", "0"), strict=True):
        Device.objects.filter(pk=device.pk).update(customer=customer)
        DeviceUsage.objects.filter(device=device).update(projected_mb=Decimal(mb))
    provider_a.pooling = pooling
    provider_a.save(update_fields=["pooling", "portal_type"])
    run, totals = finalized(provider_a)
    assert_priced_as_billed(run, totals)
    problem, _ = problem_of_rows(run)
    brute = Decimal(str(brute_force(problem)))
    assert abs(brute - Decimal(optimum)) < Decimal("0.0001")
    assert totals.lower_bound <= brute + Decimal("0.0001") and abs(totals.optimized_cost - brute) < Decimal("0.0001")


def test_customer_pools_that_never_meet_leave_groups_apart(provider_a):
    devices = fleet_seed(provider=provider_a, groups=2, sims_per_group=3)
    north, south = (Customer.objects.create(tenant=provider_a.tenant, name=n) for n in ("North", "South"))
    for device in devices[:3]:
        Device.objects.filter(pk=device.pk).update(customer=north)
    for device in devices[3:]:
        Device.objects.filter(pk=device.pk).update(customer=south)
    provider_a.pooling = "customer"
    provider_a.save(update_fields=["pooling"])
    run, totals = finalized(provider_a)
    assert [q.scope for q in run.queues.all()] == [[], []]
    assert all(g.lower_bound is not None for g in run.comm_groups.all())
    assert_priced_as_billed(run, totals)


def test_legacy_items_stay_per_group_and_finalize_prices_the_shared_pools(provider_a):
    fleet_seed(provider=provider_a, groups=3, sims_per_group=5)
    provider_a.pooling = "account"
    provider_a.save(update_fields=["pooling"])
    run, totals = finalized(provider_a, method="legacy")
    assert all(q.scope == [] for q in run.queues.all()) and run.queues.count() >= 3
    problem, chosen = problem_of_rows(run)
    assert abs(Decimal(str(reference_price(problem, chosen))) - totals.optimized_cost) < CENT
    assert totals.lower_bound is None and totals.optimized_cost <= totals.current_cost


def test_a_sync_after_the_scope_item_is_solved_again_at_finalize(provider_a):
    fleet_seed(provider=provider_a, groups=3, sims_per_group=4)
    provider_a.pooling = "account"
    provider_a.save(update_fields=["pooling"])
    run = built(provider_a)
    for queue_id in optimizer_services.work_items_create(run=run):
        optimizer_services.work_item_run(queue_id=queue_id, worker="w1")
    DeviceUsage.objects.filter(billing_period=run.billing_period).update(projected_mb=Decimal("0.5"))
    with transaction.atomic():
        totals = optimizer_services.results_finalize(run=run)
    run.refresh_from_db()
    assert_priced_as_billed(run, totals)
    assert all("certified (at finalize)" in g.winning_strategy or g.winning_method in ("baseline", "current")
               for g in run.comm_groups.all())


def test_a_sim_on_another_accounts_rate_plan_stops_the_grouping_naming_it(provider_a, provider_b):
    devices = fleet_seed(provider=provider_a, groups=2, sims_per_group=3)
    fleet_seed(provider=provider_b, groups=1, sims_per_group=1)
    foreign = RatePlan.objects.get(provider=provider_b, code="M2M-10MB-POOL")
    Device.objects.filter(pk=devices[4].pk).update(rate_plan=foreign)
    provider_a.pooling = "account"
    provider_a.save(update_fields=["pooling"])
    with pytest.raises(ForeignRatePlan) as refused:
        built(provider_a)
    assert refused.value.field == "rate_plan" and refused.value.extra == {"iccids": [devices[4].iccid]}
    assert "another carrier account (M2M-10MB-POOL)" in refused.value.message
    assert "never mixes plans of different accounts" in refused.value.message


def test_a_foreign_plan_that_appears_after_the_grouping_is_refused_by_the_work_item_too(provider_a, provider_b):
    devices = fleet_seed(provider=provider_a, groups=1, sims_per_group=3)
    fleet_seed(provider=provider_b, groups=1, sims_per_group=1)
    run = built(provider_a)
    [queue_id] = optimizer_services.work_items_create(run=run)
    Device.objects.filter(pk=devices[0].pk).update(rate_plan=RatePlan.objects.get(provider=provider_b, code="M2M-5MB"))
    assert optimizer_services.work_item_run(queue_id=queue_id, worker="w1")
    item = OptimizationQueue.objects.get(pk=queue_id)
    assert item.status == "CompleteWithErrors" and "another carrier account (M2M-5MB)" in item.error


@hyp_settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(usage=st.lists(st.integers(0, 240).map(lambda q: Decimal(q) / 4), min_size=4, max_size=4),
       customers=st.lists(st.sampled_from([None, 0, 1]), min_size=4, max_size=4),
       pooling=st.sampled_from(["group", "customer", "account"]))
def test_sessions_price_and_bound_small_fleets_as_the_brute_force_says(provider_a, usage, customers, pooling):
    """Two groups allowing different plans (6 and 9, three pooled plans in common), four SIMs: every stored
    figure is the reference pricer's, the bound is never above the brute-force optimum, the answer never below."""
    with transaction.atomic():
        devices = fleet_seed(provider=provider_a, groups=2, sims_per_group=2, seed=5)
        names = [Customer.objects.get_or_create(tenant=provider_a.tenant, name=n)[0] for n in ("North", "South")]
        for device, customer, mb in zip(devices, customers, usage, strict=True):
            Device.objects.filter(pk=device.pk).update(customer=None if customer is None else names[customer])
            DeviceUsage.objects.filter(device=device).update(projected_mb=mb)
        provider_a.pooling = pooling
        provider_a.save(update_fields=["pooling"])
        run, totals = finalized(provider_a)
        assert_priced_as_billed(run, totals)
        problem, _ = problem_of_rows(run)
        brute = Decimal(str(brute_force(problem)))
        tol = Decimal("0.0001")
        assert totals.lower_bound <= brute + tol and brute <= totals.optimized_cost + tol
        transaction.set_rollback(True)
