"""Change budgets and the savings-versus-changes frontier against brute force on small problems:
bound <= the best answer within the budget <= the answer given, changes <= budget, cost and bound never
rising with the budget, SIMs that cannot move never counted, every answer priced exactly."""
import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.engine import Billing, Catalogue, Problem, ProblemError, price, solve_certified, synthetic
from optimizer.engine.budget import budgets_for, frontier, never_ranked, solve_budgeted
from tests.optimizer.engine.reference import reference_price

money = st.floats(0.0, 30.0, allow_nan=False).map(lambda x: round(x, 2))
positive = st.floats(0.01, 2.0, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def small_problems(draw, pooled=None):
    P = draw(st.integers(1, 3))
    included = draw(st.lists(st.sampled_from([0.0, 1.0, 5.0, 10.0, 25.0, 100.0]), min_size=P, max_size=P))
    cat = Catalogue(
        plan_ids=tuple(f"R{i}" for i in range(P)),
        monthly_cost=np.array(draw(st.lists(money, min_size=P, max_size=P))),
        included_mb=np.array(included),
        overage_rate=np.array(draw(st.lists(positive, min_size=P, max_size=P))),
        overage_block_mb=np.array(draw(st.lists(st.sampled_from([0.5, 1.0, 10.0]), min_size=P, max_size=P))),
        fee_per_sim=np.array(draw(st.lists(st.sampled_from([0.0, 0.1, 1.0]), min_size=P, max_size=P))),
        pooled=np.array(draw(st.lists(st.booleans(), min_size=P, max_size=P)) if pooled is None else [pooled] * P),
    )
    G = draw(st.integers(1, 2))
    allowed = np.array(draw(st.lists(st.lists(st.booleans(), min_size=P, max_size=P), min_size=G, max_size=G)))
    allowed[:, 0] |= ~allowed.any(axis=1)
    n = draw(st.integers(1, 6))
    usage = draw(st.lists(st.one_of(st.just(0.0), st.sampled_from(included),
                                    st.floats(0.0, 200.0, allow_nan=False).map(lambda x: round(x, 1))),
                          min_size=n, max_size=n))
    group = np.array(draw(st.lists(st.integers(0, G - 1), min_size=n, max_size=n)), dtype=np.int32)
    # Current plans: mostly allowed ones, sometimes one the group no longer allows (that SIM must move).
    current = np.array([draw(st.sampled_from(np.flatnonzero(allowed[g]).tolist() * 3 + list(range(P))))
                        for g in group], dtype=np.int32)
    movable = np.array(draw(st.lists(st.sampled_from([True, True, True, False]), min_size=n, max_size=n)))
    factor = None
    if draw(st.booleans()):
        factor = np.array(draw(st.lists(st.sampled_from([1.0, 0.5, 0.2]), min_size=n, max_size=n)))
    pool = None
    if G > 1 and draw(st.booleans()):
        pool = np.zeros(n, dtype=np.int64)
    return Problem(catalogue=cat, usage_mb=np.array(usage), group=group, allowed=allowed,
                   billing=Billing(30, 30, factor is not None), charge_type=draw(st.sampled_from(["both", "both", "rate"])),
                   current_plan=current, movable=movable, factor=factor, pool=pool)


def brute_force(pr: Problem) -> np.ndarray:
    """Cheapest price with at most k changes, for k = 0 .. n (inf where no answer has so few)."""
    options = []
    for i in range(pr.n_sims):
        c = int(pr.current_plan[i])
        options.append([c] if not pr.movable[i] else np.flatnonzero(pr.allowed[pr.group[i]]).tolist())
    best = np.full(pr.n_sims + 1, np.inf)
    for a in itertools.product(*options):
        a = np.array(a)
        k = int((a != pr.current_plan).sum())
        best[k] = min(best[k], reference_price(pr, a))
    return np.minimum.accumulate(best)


def _tol(x):
    return 1e-7 * max(1.0, abs(x))


SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(small_problems(), st.sampled_from([0, 100_000]))
def test_frontier_against_brute_force(pr, exact_limit):
    """exact_limit 0 makes the unconstrained solve use the dual (multipliers) even on these tiny groups."""
    opt = brute_force(pr)
    forced = int((pr.movable & ~pr.allowed[pr.group, pr.current_plan]).sum())
    budgets = list(range(forced, pr.n_sims + 1))
    fr = frontier(pr, budgets=budgets, exact_limit=exact_limit)
    assert fr.forced == forced
    costs = [p.total_cost for p in fr.points]
    bounds = [p.lower_bound for p in fr.points]
    for p in fr.points:
        a = fr.assignment(p.changes)
        assert p.changes <= p.max_changes
        assert int((a != pr.current_plan).sum()) == p.changes
        assert (a[~pr.movable] == pr.current_plan[~pr.movable]).all()
        assert pr.allowed[pr.group, a][pr.movable].all()
        assert p.total_cost == pytest.approx(reference_price(pr, a), rel=1e-9, abs=1e-9)
        assert p.lower_bound <= opt[p.max_changes] + _tol(opt[p.max_changes])
        assert p.total_cost >= opt[p.max_changes] - _tol(opt[p.max_changes])
    assert all(b <= a + 1e-12 for a, b in zip(costs, costs[1:], strict=False))
    assert all(b <= a + 1e-12 for a, b in zip(bounds, bounds[1:], strict=False))
    # Answers are prefixes of one order: a larger budget's moves include a smaller one's.
    for p, q in zip(fr.points, fr.points[1:], strict=False):
        small, large = fr.assignment(p.changes) != pr.current_plan, fr.assignment(q.changes) != pr.current_plan
        assert not (small & ~large).any()


@SETTINGS
@given(small_problems(), st.integers(0, 6))
def test_solve_budgeted_against_brute_force(pr, k):
    forced = int((pr.movable & ~pr.allowed[pr.group, pr.current_plan]).sum())
    if k < forced:
        with pytest.raises(ProblemError, match="must change plan"):
            solve_budgeted(pr, k)
        return
    opt = brute_force(pr)[min(k, pr.n_sims)]
    sol = solve_budgeted(pr, k)
    assert sol.changes <= k and sol.max_changes == k
    assert sol.total_cost == pytest.approx(price(pr, sol.assignment).total, rel=1e-12)
    assert sol.lower_bound <= opt + _tol(opt) <= sol.total_cost + 2 * _tol(opt)


@SETTINGS
@given(small_problems(pooled=False))
def test_without_pooled_plans_every_budget_is_solved_exactly(pr):
    """Individual plans only: savings add up, so the answer and the bound are both the optimum."""
    opt = brute_force(pr)
    forced = int((pr.movable & ~pr.allowed[pr.group, pr.current_plan]).sum())
    fr = frontier(pr, budgets=list(range(forced, pr.n_sims + 1)))
    for p in fr.points:
        assert p.total_cost == pytest.approx(opt[p.max_changes], rel=1e-9, abs=1e-9)
        assert p.lower_bound == pytest.approx(opt[p.max_changes], rel=1e-6, abs=1e-6)


def test_budget_zero_keeps_every_plan_and_its_bound_is_tight():
    pr = synthetic.fleet(3000, seed=4, groups=2, pinned=0.1)
    sol = solve_budgeted(pr, 0)
    assert (sol.assignment == pr.current_plan).all() and sol.changes == 0
    assert sol.lower_bound <= sol.total_cost <= sol.lower_bound * (1 + 1e-4)


def test_frontier_on_a_fleet_brings_most_savings_early_and_ends_at_the_unconstrained_answer():
    pr = synthetic.fleet(4000, seed=5, pooled="mixed", groups=3, prorated=0.1, pinned=0.05)
    ref = solve_certified(pr)
    fr = frontier(pr, points=20, reference=ref)
    ks = [p.max_changes for p in fr.points]
    assert ks[0] == 0 and ks[-1] == ref.changes and 15 <= len(ks) <= 20
    base = price(pr, pr.current_plan).total
    last = fr.points[-1]
    assert last.total_cost <= ref.total_cost + 1e-9
    assert last.lower_bound >= ref.lower_bound * (1 - 1e-8)
    # A quarter of the changes bring well over a quarter of the savings (concave frontier).
    quarter = min(fr.points, key=lambda p: abs(p.max_changes - ref.changes / 4))
    assert (base - quarter.total_cost) > 0.5 * (base - ref.total_cost)
    for p in fr.points:
        assert p.lower_bound <= p.total_cost
        assert p.gap < 0.05
    # The pinned SIMs never move, at any budget.
    assert (fr.rank[~pr.movable] == -1).all()


def test_budgets_for_spreads_points_without_repeats():
    assert budgets_for(0, 10, 20).tolist() == list(range(11))
    b = budgets_for(0, 1000, 20)
    assert b[0] == 0 and b[-1] == 1000 and len(b) == 20
    assert budgets_for(3, 3, 20).tolist() == [3]


def test_negative_budget_is_refused():
    pr = synthetic.fleet(50, seed=1)
    with pytest.raises(ProblemError, match="max_changes"):
        solve_budgeted(pr, -1)


@SETTINGS
@given(small_problems(), st.booleans())
def test_never_ranked_is_where_the_order_of_moves_has_no_rank(pr, keep_current):
    """Whatever the reference answer (the current plans kept even where no longer allowed: those SIMs still
    count as moves), the SIMs never_ranked leaves out are exactly those the frontier's order does not rank."""
    ref = solve_certified(pr)
    if keep_current:
        ref = dataclasses.replace(ref, assignment=pr.current_plan.astype(np.int32), multipliers=None)
    fr = frontier(pr, points=5, reference=ref)
    assert (never_ranked(pr, ref.assignment) == (fr.rank < 0)).all()
    # Per group, on the group's own problem: the same SIMs.
    for g in range(pr.n_groups):
        on = pr.group == g
        alone = Problem(catalogue=pr.catalogue, usage_mb=pr.usage_mb[on], group=np.zeros(int(on.sum()), np.int32),
                        allowed=pr.allowed[g : g + 1], billing=pr.billing, charge_type=pr.charge_type,
                        current_plan=pr.current_plan[on], movable=pr.movable[on],
                        factor=None if pr.factor is None else pr.factor[on])
        assert (never_ranked(alone, ref.assignment[on]) == (fr.rank[on] < 0)).all()
