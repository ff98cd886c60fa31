"""factory-boy factories for sessions and their results, and a helper that builds a finished session."""
import random
from decimal import Decimal

import factory
from django.utils import timezone
from rest_framework.authtoken.models import Token

from optimizer.models import CommGroup, DeviceAssignment, GroupStatus, OptimizationRun
from sessions.models import OptimizationSession, ProgressEvent
from tests.factories import (
    BillingPeriodFactory,
    CommunicationPlanFactory,
    DeviceFactory,
    RatePlanFactory,
    ServiceProviderFactory,
)


class OptimizationRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OptimizationRun

    provider = factory.SubFactory(ServiceProviderFactory)
    billing_period = factory.SubFactory(BillingPeriodFactory, provider=factory.SelfAttribute("..provider"))
    method = "certified"
    status = "CompleteWithSuccess"


class OptimizationSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OptimizationSession

    provider = factory.SubFactory(ServiceProviderFactory)
    tenant = factory.LazyAttribute(lambda o: o.provider.tenant)
    billing_period = factory.SubFactory(BillingPeriodFactory, provider=factory.SelfAttribute("..provider"))
    status = "succeeded"
    stage = "complete"
    progress = 100
    trigger = "api"
    method = "certified"
    run = factory.SubFactory(OptimizationRunFactory, provider=factory.SelfAttribute("..provider"),
                             billing_period=factory.SelfAttribute("..billing_period"), method=factory.SelfAttribute("..method"))


class CommGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CommGroup

    run = factory.SubFactory(OptimizationRunFactory)
    name = factory.Sequence(lambda n: f"G{n + 1}")
    plan_key = factory.Sequence(lambda n: f"key-{n}")
    status = GroupStatus.OPTIMIZED


class ProgressEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProgressEvent

    session = factory.SubFactory(OptimizationSessionFactory)
    provider = factory.LazyAttribute(lambda o: o.session.provider)
    sequence = factory.Sequence(lambda n: n + 1)
    kind = "Progress"
    progress = 0
    payload = factory.LazyAttribute(lambda o: {"data": {"Progress": o.progress}})


def token_for(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def _money(rng: random.Random, low: float, high: float) -> Decimal:
    return Decimal(f"{rng.uniform(low, high):.4f}")


def session_with_results(*, provider, period=None, groups: int = 2, sims_per_group: int = 3, seed: int = 1,
                         notes: dict[int, str] | None = None, **session_fields) -> OptimizationSession:
    """A completed session whose stored totals are exactly the sums of its groups and SIM rows.

    Each group allows two rate plans; about half the SIMs change plan. `notes` puts a
    device note on the SIM with that running index (0-based).
    """
    rng = random.Random(seed)
    period = period or provider.billing_periods.first() or BillingPeriodFactory(provider=provider)
    session = OptimizationSessionFactory(
        provider=provider, billing_period=period, started_at=timezone.now() - timezone.timedelta(minutes=3),
        finished_at=timezone.now(),
        stage_timings={"start": {"started": "2026-11-20T10:00:00+00:00", "finished": "2026-11-20T10:00:01+00:00",
                                 "seconds": 1.0}},
        **session_fields,
    )
    run = session.run
    totals = {"sims": 0, "current": Decimal(0), "baseline": Decimal(0), "optimized": Decimal(0), "bound": Decimal(0)}
    index = 0
    for g in range(groups):
        small = RatePlanFactory(provider=provider, code=f"M2M-{session.pk}-{g}-10MB", included_mb=Decimal("10"),
                                monthly_cost=Decimal("3.5000"))
        large = RatePlanFactory(provider=provider, code=f"M2M-{session.pk}-{g}-100MB", included_mb=Decimal("100"),
                                monthly_cost=Decimal("9.2500"), pooled=True)
        comm = CommunicationPlanFactory(provider=provider, name=f"CP-{session.pk}-{g}", rate_plans=[small, large])
        group = CommGroupFactory(run=run, name=f"G{g + 1}", plan_key=f"{small.pk},{large.pk}")
        group.communication_plans.set([comm])
        group.rate_plans.set([small, large])
        current_sum = optimized_sum = Decimal(0)
        for _ in range(sims_per_group):
            device = DeviceFactory(provider=provider, rate_plan=small, communication_plan=comm,
                                   sim_notes=(notes or {}).get(index, ""))
            recommended = large if rng.random() < 0.5 else small
            current_cost = _money(rng, 3, 20)
            recommended_cost = current_cost if recommended == small else _money(rng, 2, float(current_cost))
            DeviceAssignment.objects.create(
                run=run, comm_group=group, device=device, iccid=device.iccid,
                usage_mb=Decimal(f"{rng.uniform(0, 150):.3f}"), current_plan=small, recommended_plan=recommended,
                current_cost=current_cost, recommended_cost=recommended_cost, changed=recommended != small,
            )
            current_sum += current_cost
            optimized_sum += recommended_cost
            index += 1
        bound = optimized_sum - _money(rng, 0, 0.5)
        group.device_count = sims_per_group
        group.current_cost, group.baseline_cost = current_sum, current_sum + Decimal("1.2345")
        group.optimized_cost, group.lower_bound = optimized_sum, bound
        group.winning_method, group.winning_strategy = "certified", "certified"
        group.save()
        totals["sims"] += sims_per_group
        totals["current"] += current_sum
        totals["baseline"] += group.baseline_cost
        totals["optimized"] += optimized_sum
        totals["bound"] += bound
    session.device_count = totals["sims"]
    session.current_cost, session.baseline_cost = totals["current"], totals["baseline"]
    session.optimized_cost, session.lower_bound = totals["optimized"], totals["bound"]
    session.save()
    return session
