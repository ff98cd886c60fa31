"""The cost model of shared/spec/cost-model.md: price of an assignment, per group/plan/SIM, vectorised."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import Problem, ProblemError

# The spec's tolerance inside ceil: usage a hair above a block boundary through float noise is not a new block.
BLOCK_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class PlanTerms:
    """Per-plan figures after proration and charge type: what the solvers and the pricer actually use.

    K: per-SIM charge counted at the billing factor (prorated monthly cost + fee, or 0 when only overage
    is counted).  A: allowance per SIM at the billing factor.  r: overage rate counted (0 when only the
    rate charge is counted).  b: overage block.  s = r / b, the largest multiplier the Lagrangian bound
    may use.  monthly, fee, included: the unprorated parts, for SIMs with their own factor f_i, whose
    charge is f_i * monthly + fee and allowance f_i * included.
    """

    K: np.ndarray
    A: np.ndarray
    r: np.ndarray
    b: np.ndarray
    s: np.ndarray
    pooled: np.ndarray
    monthly: np.ndarray
    fee: np.ndarray
    included: np.ndarray

    def charge(self, plan, f=None):
        """Recurring charge + fee counted for SIMs on `plan` (array) with factors f (None: the billing factor)."""
        return self.K[plan] if f is None else f * self.monthly[plan] + self.fee[plan]

    def allowance(self, plan, f=None):
        return self.A[plan] if f is None else f * self.included[plan]


def plan_terms(problem: Problem) -> PlanTerms:
    cat = problem.catalogue
    f = problem.billing.factor
    rate_on = problem.charge_type in ("both", "rate")
    over_on = problem.charge_type in ("both", "overage")
    K = f * cat.monthly_cost + cat.fee_per_sim if rate_on else np.zeros(len(cat))
    A = f * cat.included_mb
    r = cat.overage_rate.copy() if over_on else np.zeros(len(cat))
    b = cat.overage_block_mb.copy()
    monthly = cat.monthly_cost.copy() if rate_on else np.zeros(len(cat))
    fee = cat.fee_per_sim.copy() if rate_on else np.zeros(len(cat))
    return PlanTerms(K=K, A=A, r=r, b=b, s=r / b, pooled=cat.pooled.copy(), monthly=monthly, fee=fee,
                     included=cat.included_mb.copy())


def blocks(excess_mb, block_mb):
    """Overage blocks for usage above the allowance: ceil(x / b - 1e-9) for x > 0, else 0."""
    x = np.asarray(excess_mb, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.ceil(x / block_mb - BLOCK_EPS)
    return np.where(x > 0, np.maximum(n, 0.0), 0.0)


@dataclass(frozen=True, eq=False)
class Pricing:
    """Price of one assignment; `unpriced` SIMs (assignment -1) contribute nothing and are counted."""

    total: float
    rate: float
    overage: float
    per_group: np.ndarray
    per_plan: np.ndarray
    rate_per_group: np.ndarray
    overage_per_group: np.ndarray
    pool_sims: np.ndarray
    pool_usage: np.ndarray
    pool_allowance: np.ndarray
    pool_blocks: np.ndarray
    unpriced: int
    unpriced_per_group: np.ndarray


def _check_assignment(problem: Problem, assignment) -> np.ndarray:
    a = np.asarray(assignment)
    if a.shape != (problem.n_sims,):
        raise ProblemError(f"assignment must have shape ({problem.n_sims},), got {a.shape}")
    a = a.astype(np.int64, copy=False)
    if a.size and (a.min() < -1 or a.max() >= problem.n_plans):
        raise ProblemError(f"assignment values must lie in [-1, {problem.n_plans})")
    return a


def _price_arrays(t: PlanTerms, u: np.ndarray, grp: np.ndarray, a: np.ndarray, G: int, f=None, pool=None) -> Pricing:
    """f: per-SIM factors aligned with u, or None when every SIM has the billing factor.

    pool: per-SIM pool scope (0..k-1), or None when each group is its own scope.  Pools then span groups:
    pool_* arrays are per scope and plan, and a pool's overage is counted in the groups of the SIMs that
    used it, in proportion to each member's usage above its allowance (as sim_costs shares it).
    """
    P = t.K.shape[0]
    valid = a >= 0
    av = np.where(valid, a, 0)

    rate_sim = np.where(valid, t.charge(av, f), 0.0)
    allowance = t.allowance(av, f)
    single = valid & ~t.pooled[av]
    over_single = np.where(single, t.r[av] * blocks(u - allowance, t.b[av]), 0.0)

    pooled_sim = valid & t.pooled[av]
    scope = grp if pool is None else pool
    S = G if pool is None else (int(pool.max()) + 1 if pool.size else 0)
    key = scope.astype(np.int64) * P + av
    # bincount adds weights in SIM order, so a loop over SIMs summing usage per pool gets the same bits.
    pool_n = np.bincount(key[pooled_sim], minlength=S * P).reshape(S, P)
    pool_u = np.bincount(key[pooled_sim], weights=u[pooled_sim], minlength=S * P).reshape(S, P)
    if f is None:
        pool_a = pool_n * t.A[None, :]
    else:
        # A pool's allowance is the sum of its members' prorated allowances.
        pool_a = np.bincount(key[pooled_sim], weights=allowance[pooled_sim], minlength=S * P).reshape(S, P)
    pool_blocks = np.where(pool_n > 0, blocks(pool_u - pool_a, t.b[None, :]), 0.0)
    over_pool = pool_blocks * t.r[None, :]

    rate_g = np.bincount(grp, weights=rate_sim, minlength=G).astype(np.float64)
    if pool is None:
        over_g = np.bincount(grp, weights=over_single, minlength=G) + over_pool.sum(axis=1)
    else:
        above = np.where(pooled_sim, np.maximum(u - allowance, 0.0), 0.0)
        weight = np.bincount(key[pooled_sim], weights=above[pooled_sim], minlength=S * P)
        charge = over_pool.ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(pooled_sim & (weight[key] > 0), above / weight[key] * charge[key], 0.0)
        over_g = np.bincount(grp, weights=over_single + share, minlength=G)
    per_plan = np.bincount(av, weights=rate_sim + over_single, minlength=P) + over_pool.sum(axis=0)
    per_group = rate_g + over_g
    unpriced_g = np.bincount(grp[~valid], minlength=G)
    overage = float(over_single.sum() + over_pool.sum()) if pool is not None else float(over_g.sum())
    return Pricing(
        total=float(per_group.sum()) if pool is None else float(rate_g.sum()) + overage,
        rate=float(rate_g.sum()),
        overage=overage,
        per_group=per_group,
        per_plan=per_plan,
        rate_per_group=rate_g,
        overage_per_group=over_g,
        pool_sims=pool_n,
        pool_usage=pool_u,
        pool_allowance=pool_a,
        pool_blocks=pool_blocks,
        unpriced=int((~valid).sum()),
        unpriced_per_group=unpriced_g,
    )


def price(problem: Problem, assignment) -> Pricing:
    """Price `assignment` (plan index per SIM, -1 = not priced) exactly as the cost model says."""
    a = _check_assignment(problem, assignment)
    return _price_arrays(plan_terms(problem), problem.usage_mb, problem.group, a, problem.n_groups, problem.factor,
                         problem.pool)


def scope_cost(t: PlanTerms, u: np.ndarray, a: np.ndarray, f=None) -> float:
    """Cost of SIMs that form whole pools (one pool scope, any groups), in the order given."""
    a = np.asarray(a, dtype=np.int64)
    return float(_price_arrays(t, u, np.zeros(a.shape[0], dtype=np.int64), a, 1, f).total)


def group_cost(t: PlanTerms, u_orig_order: np.ndarray, a_orig_order: np.ndarray, f_orig_order=None) -> float:
    """Cost of one group's SIMs given in their original order: bit-for-bit price(...).per_group[g].

    f_orig_order: the SIMs' factors (problem.factor[members]) or None when the problem has none.
    """
    a = np.asarray(a_orig_order, dtype=np.int64)
    return float(_price_arrays(t, u_orig_order, np.zeros(a.shape[0], dtype=np.int64), a, 1, f_orig_order).per_group[0])


def sim_costs(problem: Problem, assignment) -> np.ndarray:
    """Each SIM's share of the price; NaN for unpriced SIMs (assignment -1), so np.nansum(...) == price().total.

    A pool's overage charge is shared in proportion to each member's usage above the prorated allowance:
    the SIMs that used the pool's spare allowance and then some pay for the blocks, those under it pay
    only their recurring charge.  A SIM whose current plan is unknown has no known cost, so a report
    shows it as unknown rather than as free.
    """
    a = _check_assignment(problem, assignment)
    pr = price(problem, a)
    t = plan_terms(problem)
    P = problem.n_plans
    u, grp, f = problem.usage_mb, problem.group, problem.factor
    scope = grp if problem.pool is None else problem.pool
    valid = a >= 0
    av = np.where(valid, a, 0)
    allowance = t.allowance(av, f)
    cost = t.charge(av, f) + np.where(~t.pooled[av], t.r[av] * blocks(u - allowance, t.b[av]), 0.0)

    pooled_sim = valid & t.pooled[av]
    key = scope.astype(np.int64) * P + av
    above = np.where(pooled_sim, np.maximum(u - allowance, 0.0), 0.0)
    weight_sum = np.bincount(key[pooled_sim], weights=above[pooled_sim], minlength=pr.pool_blocks.size)
    pool_charge = (pr.pool_blocks * t.r[None, :]).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(weight_sum[key] > 0, above / weight_sum[key], 0.0)
    cost = cost + np.where(pooled_sim, share * pool_charge[key], 0.0)
    return np.where(valid, cost, np.nan)
