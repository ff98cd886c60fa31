"""Per-SIM proration factors and SIMs that cannot move: priced as the cost model says, bounded, never moved."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.engine import (
    Billing,
    Catalogue,
    Problem,
    ProblemError,
    baseline_assignment,
    price,
    sim_costs,
    solve_certified,
    solve_legacy,
    synthetic,
)
from tests.optimizer.engine.reference import brute_force_optimum, problem_of, reference_price, two_plan_catalogue

money = st.floats(0.0, 30.0, allow_nan=False).map(lambda x: round(x, 2))
positive = st.floats(0.01, 2.0, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def small_problems(draw, max_sims=7, max_plans=3, max_groups=2):
    """Groups small enough to list every assignment: mixed factors (days of a 30-day cycle) and pinned SIMs,
    some on a plan their group does not allow."""
    P = draw(st.integers(1, max_plans))
    included = draw(st.lists(st.sampled_from([0.0, 1.0, 5.0, 10.0, 25.0, 100.0]), min_size=P, max_size=P))
    cat = Catalogue(
        plan_ids=tuple(f"R{i}" for i in range(P)),
        monthly_cost=np.array(draw(st.lists(money, min_size=P, max_size=P))),
        included_mb=np.array(included),
        overage_rate=np.array(draw(st.lists(positive, min_size=P, max_size=P))),
        overage_block_mb=np.array(draw(st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=P, max_size=P))),
        fee_per_sim=np.array(draw(st.lists(st.sampled_from([0.0, 0.1, 1.0]), min_size=P, max_size=P))),
        pooled=np.array(draw(st.lists(st.booleans(), min_size=P, max_size=P))),
    )
    G = draw(st.integers(1, max_groups))
    allowed = np.array(draw(st.lists(st.lists(st.booleans(), min_size=P, max_size=P), min_size=G, max_size=G)))
    allowed[:, 0] |= ~allowed.any(axis=1)
    n = draw(st.integers(1, max_sims))
    usage = draw(st.lists(st.one_of(st.just(0.0), st.sampled_from(included),
                                    st.floats(0.0, 60.0, allow_nan=False).map(lambda x: round(x, 1))),
                          min_size=n, max_size=n))
    group = np.array(draw(st.lists(st.integers(0, G - 1), min_size=n, max_size=n)), dtype=np.int32)
    days = draw(st.lists(st.one_of(st.just(30), st.integers(0, 30)), min_size=n, max_size=n))
    movable = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    # Pinned SIMs may sit on any plan of the catalogue; movable ones on an allowed plan or none.
    current = np.array([
        draw(st.sampled_from(list(range(P)))) if not movable[i]
        else draw(st.sampled_from(np.flatnonzero(allowed[g]).tolist() + [-1]))
        for i, g in enumerate(group)
    ], dtype=np.int32)
    return Problem(
        catalogue=cat,
        usage_mb=np.array(usage, dtype=np.float64),
        group=group,
        allowed=allowed,
        billing=Billing(30, 30, True),
        charge_type=draw(st.sampled_from(["both", "both", "rate", "overage"])),
        current_plan=current,
        factor=np.array(days, dtype=np.float64) / 30.0,
        movable=movable,
    )


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
    assert sol.changes == int((sol.assignment != pr.current_plan).sum())


@SETTINGS
@given(small_problems())
def test_certified_bound_never_above_the_brute_force_optimum(pr):
    opt = brute_force_optimum(pr)
    sol = solve_certified(pr)
    _check(pr, sol)
    assert sol.lower_bound <= opt + _tol(opt)
    # Small groups are enumerated: the answer is the optimum.
    assert sol.total_cost <= opt + _tol(opt)


@SETTINGS
@given(small_problems())
def test_lagrangian_path_alone_bounds_and_prices_mixed_factors_and_pinned_sims(pr):
    opt = brute_force_optimum(pr)
    sol = solve_certified(pr, exact_limit=0, compare_legacy=False)
    _check(pr, sol)
    assert sol.lower_bound <= opt + _tol(opt)
    assert sol.total_cost >= opt - _tol(opt)


@SETTINGS
@given(small_problems())
def test_legacy_never_moves_a_pinned_sim_and_prices_as_reported(pr):
    sol = solve_legacy(pr, max_plans=None)
    _check(pr, sol)
    base = baseline_assignment(pr)
    assert np.array_equal(base[~pr.movable_mask], pr.current_plan[~pr.movable_mask])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(small_problems(max_sims=300, max_plans=5))
def test_bound_below_answer_on_larger_groups(pr):
    sol = solve_certified(pr, exact_limit=0)
    _check(pr, sol)
    assert sol.lower_bound <= sol.total_cost + _tol(sol.total_cost)
    assert np.nansum(sim_costs(pr, sol.assignment)) == pytest.approx(sol.total_cost, rel=1e-9, abs=1e-9)


def test_factors_scale_charge_and_allowance_not_fees_and_pools_sum_their_members_allowances():
    cat = two_plan_catalogue(pooled=(True, False), fee=(0.5, 0.25))  # SMALL 5.00/10 MB pooled, BIG 20.00/100 MB
    pr = problem_of(cat, [12.0, 0.0, 30.0], factor=[1.0, 0.5, 0.3])
    # Pool: charges 5+0.5, 2.5+0.5; allowance 10 + 5 = 15 MB for 12 MB used: no overage.
    # BIG for the third SIM: 0.3*20 + 0.25, allowance 30 MB for 30 MB used: no overage.
    assert price(pr, [0, 0, 1]).total == pytest.approx(5.5 + 3.0 + 6.25)
    # Third SIM in the pool too: allowance 15 + 3 = 18 MB for 42 MB: 24 MB over in 2 MB blocks at 0.50.
    assert price(pr, [0, 0, 0]).total == pytest.approx(5.5 + 3.0 + 2.0 + 12 * 0.5)
    full = problem_of(cat, [12.0, 0.0, 30.0])
    assert price(full, [0, 0, 0]).total == pytest.approx(3 * 5.5 + 6 * 0.5)


def test_a_pinned_sim_keeps_a_plan_its_group_no_longer_allows_and_counts_in_its_pool():
    cat = two_plan_catalogue(pooled=(True, True))
    allowed = np.array([[False, True]])  # only BIG allowed now
    pr = Problem(cat, np.array([0.0, 30.0, 2.0]), np.zeros(3, np.int32), allowed,
                 current_plan=np.array([0, 0, 1], np.int32), movable=np.array([False, True, True]))
    for sol in (solve_certified(pr), solve_legacy(pr, max_plans=None)):
        assert sol.assignment[0] == 0
        assert (sol.assignment[1:] == 1).all()
        assert sol.total_cost == pytest.approx(reference_price(pr, sol.assignment))
        assert sol.changes == 1


def test_a_pinned_sim_in_a_pool_changes_what_the_others_should_do():
    # One idle SIM pinned on SMALL brings 10 MB of allowance: a movable 18 MB SIM is cheaper beside it.
    cat = two_plan_catalogue(pooled=(True, False))
    free = problem_of(cat, [0.0, 18.0], current_plan=[0, 1])
    pinned = problem_of(cat, [0.0, 18.0], current_plan=[0, 1], movable=[False, True])
    a, b = solve_certified(free), solve_certified(pinned)
    assert b.assignment[0] == 0
    assert b.total_cost == pytest.approx(brute_force_optimum(pinned))
    assert a.total_cost <= b.total_cost + 1e-9


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"factor": [0.5, 1.5]}, "factor must lie in"),
    ({"factor": [0.5, float("nan")]}, "factor must lie in"),
    ({"factor": [0.5]}, "factor must have shape"),
    ({"movable": [True, False]}, "SIM 1 is not movable but has no current plan"),
])
def test_bad_factors_and_pinned_sims_without_a_plan_are_refused(kwargs, message):
    with pytest.raises(ProblemError, match=message) as exc:
        problem_of(two_plan_catalogue(), [1.0, 2.0], current_plan=[0, -1], **kwargs)
    assert "np." not in str(exc.value)


def test_a_tenth_prorated_and_a_twentieth_pinned_at_twenty_thousand():
    base = synthetic.fleet(20_000, pooled="mixed", groups=3, seed=31)
    rng = np.random.default_rng(5)
    days = np.where(rng.random(base.n_sims) < 0.1, rng.integers(0, 31, base.n_sims), 30)
    pinned = rng.random(base.n_sims) < 0.05
    pr = Problem(base.catalogue, base.usage_mb, base.group, base.allowed, Billing(30, 30, True), "both",
                 base.group_names, base.current_plan, base.comm_plan, factor=days / 30.0, movable=~pinned)
    sol = solve_certified(pr)
    _check(pr, sol)
    assert sol.lower_bound <= sol.total_cost
    assert sol.gap < 0.002
    assert sol.total_cost <= price(pr, pr.current_plan).total + 1e-6
