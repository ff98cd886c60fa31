"""An independent, SIM-by-SIM pricer written from the spec, and small catalogues, for the engine's tests."""
import math

import numpy as np

from optimizer.engine import (
    Catalogue,
    Problem,
)


def reference_price(problem: Problem, assignment) -> float:
    """The spec's formulas, one SIM at a time; shares nothing with the engine but the input arrays."""
    cat = problem.catalogue
    bl = problem.billing
    f = bl.days_remaining / bl.days_in_cycle if bl.prorate else 1.0
    rate_on = problem.charge_type in ("both", "rate")
    over_on = problem.charge_type in ("both", "overage")

    def blocks(x, b):
        return max(math.ceil(x / b - 1e-9), 0) if x > 0 else 0

    total = 0.0
    pools: dict[tuple[int, int], list] = {}
    for i in range(problem.n_sims):
        p = int(assignment[i])
        if p < 0:
            continue
        fi = f if problem.factor is None else float(problem.factor[i])
        u = float(problem.usage_mb[i])
        allowance = fi * float(cat.included_mb[p])
        if rate_on:
            total += fi * float(cat.monthly_cost[p]) + float(cat.fee_per_sim[p])
        if cat.pooled[p]:
            scope = int(problem.group[i]) if problem.pool is None else int(problem.pool[i])
            pool = pools.setdefault((scope, p), [0, 0.0, 0.0])
            pool[0] += 1
            pool[1] += u
            pool[2] += allowance  # a pool's allowance is the sum of its members'
        elif over_on:
            total += float(cat.overage_rate[p]) * blocks(u - allowance, float(cat.overage_block_mb[p]))
    if over_on:
        for (_, p), (n, used, allowance) in pools.items():
            if problem.factor is None:
                allowance = n * (f * float(cat.included_mb[p]))
            total += float(cat.overage_rate[p]) * blocks(used - allowance, float(cat.overage_block_mb[p]))
    return total


def brute_force_optimum(problem: Problem) -> float:
    """The cheapest total over every assignment (each movable SIM on an allowed plan, the rest on theirs)."""
    import itertools

    movable = problem.movable_mask
    options = [
        np.flatnonzero(problem.allowed[g]) if movable[i] else [int(problem.current_plan[i])]
        for i, g in enumerate(problem.group)
    ]
    return min(reference_price(problem, a) for a in itertools.product(*options))



def two_plan_catalogue(pooled=(True, False), fee=(0.0, 0.0)):
    return Catalogue(
        plan_ids=("SMALL", "BIG"),
        monthly_cost=np.array([5.0, 20.0]),
        included_mb=np.array([10.0, 100.0]),
        overage_rate=np.array([0.5, 0.2]),
        overage_block_mb=np.array([2.0, 1.0]),
        fee_per_sim=np.array(fee),
        pooled=np.array(pooled),
    )



def problem_of(cat, usage, group=None, groups=1, **kw):
    usage = np.asarray(usage, dtype=float)
    group = np.zeros(len(usage), dtype=np.int32) if group is None else np.asarray(group, dtype=np.int32)
    return Problem(catalogue=cat, usage_mb=usage, group=group, allowed=np.ones((groups, len(cat)), bool), **kw)

