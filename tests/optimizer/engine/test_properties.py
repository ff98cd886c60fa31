"""Property tests on random catalogues and fleets: bound <= certified <= legacy and current; prices recompute."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.engine import Billing, Catalogue, Problem, price, sim_costs, solve_certified, solve_legacy
from tests.optimizer.engine.reference import reference_price

money = st.floats(0.0, 30.0, allow_nan=False).map(lambda x: round(x, 2))
positive = st.floats(0.01, 2.0, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def problems(draw, max_sims=60):
    P = draw(st.integers(1, 5))
    included = draw(st.lists(st.sampled_from([0.0, 1.0, 5.0, 10.0, 25.0, 100.0, 500.0]), min_size=P, max_size=P))
    cat = Catalogue(
        plan_ids=tuple(f"R{i}" for i in range(P)),
        monthly_cost=np.array(draw(st.lists(money, min_size=P, max_size=P))),
        included_mb=np.array(included),
        overage_rate=np.array(draw(st.lists(positive, min_size=P, max_size=P))),
        overage_block_mb=np.array(draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 10.0]), min_size=P, max_size=P))),
        fee_per_sim=np.array(draw(st.lists(st.sampled_from([0.0, 0.0, 0.1, 1.0]), min_size=P, max_size=P))),
        pooled=np.array(draw(st.lists(st.booleans(), min_size=P, max_size=P))),
    )
    G = draw(st.integers(1, 3))
    allowed = np.array(draw(st.lists(st.lists(st.booleans(), min_size=P, max_size=P), min_size=G, max_size=G)))
    allowed[:, 0] |= ~allowed.any(axis=1)
    n = draw(st.integers(0, max_sims))
    # Heavy-tailed usage with exact zeros and values sitting on allowances, where rounding bites.
    usage = draw(
        st.lists(
            st.one_of(
                st.just(0.0),
                st.sampled_from(included),
                st.floats(0.0, 50.0, allow_nan=False).map(lambda x: round(x, 1)),
                st.floats(0.0, 3000.0, allow_nan=False),
            ),
            min_size=n,
            max_size=n,
        )
    )
    group = np.array(draw(st.lists(st.integers(0, G - 1), min_size=n, max_size=n)), dtype=np.int32)
    current = np.array([draw(st.sampled_from(np.flatnonzero(allowed[g]).tolist() + [-1])) for g in group], dtype=np.int32)
    days = draw(st.integers(1, 31))
    billing = Billing(days, draw(st.integers(0, days)), draw(st.booleans()))
    return Problem(
        catalogue=cat,
        usage_mb=np.array(usage, dtype=np.float64),
        group=group,
        allowed=allowed,
        billing=billing,
        charge_type=draw(st.sampled_from(["both", "both", "rate", "overage"])),
        current_plan=current,
        comm_plan=np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int32),
    )


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _tol(x):
    return 1e-9 * max(1.0, abs(x))


@SETTINGS
@given(problems())
def test_bound_below_certified_below_legacy_and_current(pr):
    cert = solve_certified(pr)
    leg = solve_legacy(pr, max_plans=None)
    assert cert.lower_bound <= cert.total_cost + _tol(cert.total_cost)
    assert (cert.group_bound <= cert.group_cost + 1e-9).all()
    assert (cert.group_cost <= leg.group_cost + 1e-9).all()
    cur = price(pr, pr.current_plan)
    for g in range(pr.n_groups):
        members = pr.group == g
        if members.any() and (pr.current_plan[members] >= 0).all():
            assert cert.group_cost[g] <= cur.per_group[g] + _tol(cur.per_group[g])
    assigned = cert.assignment[cert.assignment >= 0]
    assert pr.allowed[pr.group[cert.assignment >= 0], assigned].all()


@SETTINGS
@given(problems())
def test_reported_costs_recompute_independently(pr):
    for sol in (solve_certified(pr), solve_legacy(pr, max_plans=None)):
        assert reference_price(pr, sol.assignment) == np_approx(sol.total_cost)
        assert sol.group_cost.sum() == np_approx(sol.total_cost)
        shares = sim_costs(pr, sol.assignment)
        assert np.nansum(shares) == np_approx(sol.total_cost)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problems(max_sims=400))
def test_lagrangian_path_bound_on_larger_random_fleets(pr):
    """Without enumeration or fallbacks, the bound must still hold and the answer must price as reported."""
    sol = solve_certified(pr, exact_limit=0, compare_legacy=False)
    assert sol.lower_bound <= sol.total_cost + _tol(sol.total_cost)
    assert reference_price(pr, sol.assignment) == np_approx(sol.total_cost)


class np_approx:
    """Equality up to float summation order (1e-9 relative)."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return abs(other - self.value) <= 1e-9 * max(1.0, abs(self.value))

    def __repr__(self):
        return f"~{self.value!r}"
