"""Pools that span groups (Problem.pool): priced as one pool, bounded, each SIM on its own group's plans."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.engine import Problem, ProblemError, price, sim_costs, solve_certified, solve_legacy, synthetic
from tests.optimizer.engine.reference import brute_force_optimum, reference_price, two_plan_catalogue
from tests.optimizer.engine.test_prorated_pinned import small_problems


@st.composite
def pooled_problems(draw, max_sims=7, max_plans=3):
    """Small problems whose SIMs share pools across up to three groups allowing different plans."""
    base = draw(small_problems(max_sims=max_sims, max_plans=max_plans, max_groups=3))
    keys = np.array(draw(st.lists(st.sampled_from([7, 7, 42]), min_size=base.n_sims, max_size=base.n_sims)))
    return Problem(base.catalogue, base.usage_mb, base.group, base.allowed, base.billing, base.charge_type,
                   None, base.current_plan, None, factor=base.factor if draw(st.booleans()) else None,
                   movable=base.movable if draw(st.booleans()) else None, pool=keys)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _tol(x):
    return 1e-9 * max(1.0, abs(x))


def _check(pr, sol):
    pinned = ~pr.movable_mask
    assert np.array_equal(sol.assignment[pinned], pr.current_plan[pinned])
    moved = ~pinned
    assert pr.allowed[pr.group[moved], sol.assignment[moved]].all()
    assert price(pr, sol.assignment).total == sol.total_cost
    assert abs(reference_price(pr, sol.assignment) - sol.total_cost) <= _tol(sol.total_cost)
    assert sol.group_cost.sum() == pytest.approx(sol.total_cost, rel=1e-9, abs=1e-9)
    assert np.nansum(sim_costs(pr, sol.assignment)) == pytest.approx(sol.total_cost, rel=1e-9, abs=1e-9)


@SETTINGS
@given(pooled_problems())
def test_bound_never_above_the_brute_force_optimum_with_pools_across_groups(pr):
    opt = brute_force_optimum(pr)
    sol = solve_certified(pr)
    _check(pr, sol)
    assert sol.lower_bound <= opt + _tol(opt)
    assert sol.total_cost <= opt + _tol(opt)  # small scopes are enumerated


@SETTINGS
@given(pooled_problems())
def test_lagrangian_path_alone_with_pools_across_groups(pr):
    opt = brute_force_optimum(pr)
    sol = solve_certified(pr, exact_limit=0)
    _check(pr, sol)
    assert sol.lower_bound <= opt + _tol(opt)
    assert sol.total_cost >= opt - _tol(opt)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pooled_problems(max_sims=300, max_plans=5))
def test_bound_below_answer_on_larger_scopes_and_legacy_prices_as_reported(pr):
    sol = solve_certified(pr, exact_limit=0)
    _check(pr, sol)
    assert sol.lower_bound <= sol.total_cost + _tol(sol.total_cost)
    _check(pr, solve_legacy(pr, max_plans=None))


def test_a_pool_shared_by_two_groups_is_one_pool():
    cat = two_plan_catalogue(pooled=(True, True))  # SMALL 5.00 / 10 MB, BIG 20.00 / 100 MB, pooled
    usage, group = np.array([0.0, 18.0]), np.array([0, 1], np.int32)
    apart = Problem(cat, usage, group, np.ones((2, 2), bool))
    shared = Problem(cat, usage, group, np.ones((2, 2), bool), pool=np.array([3, 3]))
    # Apart, the 18 MB SIM pays 4 blocks of 2 MB on SMALL; in one pool the idle SIM's 10 MB covers it.
    assert price(apart, [0, 0]).total == pytest.approx(10.0 + 4 * 0.5)
    assert price(shared, [0, 0]).total == pytest.approx(10.0)
    sol = solve_certified(shared)
    assert list(sol.assignment) == [0, 0] and sol.total_cost == pytest.approx(10.0)
    assert sol.lower_bound <= 10.0 + 1e-9
    # The group figures share the pool's cost; no bound per group when pools span groups.
    assert np.isnan(sol.group_bound).all()


def test_groups_allowing_different_plans_share_the_pooled_plan_they_have_in_common():
    cat = two_plan_catalogue(pooled=(True, True))
    allowed = np.array([[True, False], [True, True]])  # group 0 only SMALL
    pr = Problem(cat, np.array([30.0, 0.0, 0.0]), np.array([0, 1, 1], np.int32), allowed, pool=np.zeros(3, np.int64))
    sol = solve_certified(pr)
    assert sol.assignment[0] == 0
    assert sol.total_cost == pytest.approx(brute_force_optimum(pr))


def test_bad_pool_keys_are_refused():
    with pytest.raises(ProblemError, match="pool must have shape"):
        Problem(two_plan_catalogue(), np.array([1.0, 2.0]), np.zeros(2, np.int32), np.ones((1, 2), bool), pool=[1])
    with pytest.raises(ProblemError, match="pool keys must be integers"):
        Problem(two_plan_catalogue(), np.array([1.0, 2.0]), np.zeros(2, np.int32), np.ones((1, 2), bool),
                pool=np.array([0.5, 1.0]))


def test_account_wide_pools_over_four_groups_at_twenty_thousand():
    pr = synthetic.fleet(20_000, pooled="mixed", groups=4, seed=41, pools="account", prorated=0.1, pinned=0.05)
    sol = solve_certified(pr)
    _check(pr, sol)
    assert sol.gap < 0.002
    assert sol.total_cost <= price(pr, pr.current_plan).total + 1e-6
