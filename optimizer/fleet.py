"""What a fleet's usage would cost on one account's catalogue: the cheapest assignment, with its proven bound."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from django.db.models import FloatField
from django.db.models.functions import Cast

from carrieropt.money import to_money
from optimizer import engine
from optimizer.models import DeviceAssignment
from optimizer.selectors import catalogue_from_plans
from rateplans.models import RatePlan


@dataclass(frozen=True)
class FleetCost:
    sims: int  # SIMs priced (those with usage of their cycle)
    cost: Decimal | None  # None: the account has no plan a SIM could take
    lower_bound: Decimal | None
    plans: int  # rate plans of the catalogue the SIMs could take


def runs_usage(*, run_ids: list[int]) -> tuple[np.ndarray, int]:
    """The projected usage (MB) of every SIM the runs priced with usage of its cycle, and how many SIMs had none."""
    rows = DeviceAssignment.objects.filter(run_id__in=run_ids).order_by()
    usage = np.array(list(rows.filter(usage_mb__isnull=False).annotate(mb=Cast("usage_mb", FloatField()))
                          .values_list("mb", flat=True)), dtype=np.float64)
    return usage, rows.filter(usage_mb__isnull=True).count()


def fleet_cost_on_catalogue(*, provider, period, usage_mb: np.ndarray, charge_type: str = "both") -> FleetCost:
    """The cheapest a fleet with this usage costs for a full cycle of `period` on `provider`'s catalogue: every
    active, valid rate plan some communication plan of the account allows is open to every SIM (a SIM brought
    over would get the communication plan that allows it), pooled plans pool the whole fleet. A comparison only:
    nothing is recommended or moved."""
    plans = [p for p in RatePlan.objects.filter(provider=provider, active=True, communication_plans__provider=provider)
             .distinct().order_by("pk") if not p.catalogue_problems]
    n = len(usage_mb)
    if not plans or n == 0:
        return FleetCost(sims=n, cost=None if n else Decimal(0), lower_bound=None if n else Decimal(0),
                         plans=len(plans))
    days = period.days_in_cycle
    problem = engine.Problem(
        catalogue=catalogue_from_plans(plans), usage_mb=np.asarray(usage_mb, dtype=np.float64),
        group=np.zeros(n, dtype=np.int32), allowed=np.ones((1, len(plans)), dtype=bool),
        billing=engine.Billing(days_in_cycle=days, days_remaining=days, prorate=False), charge_type=charge_type)
    solution = engine.solve_certified(problem, compare_legacy=False)
    return FleetCost(sims=n, cost=to_money(solution.total_cost),
                     lower_bound=None if solution.lower_bound is None else to_money(solution.lower_bound),
                     plans=len(plans))
