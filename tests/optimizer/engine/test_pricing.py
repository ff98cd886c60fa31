"""Cost model: hand-checked prices from the spec and an independent loop-based pricer."""

import numpy as np
import pytest

from optimizer.engine import (
    Billing,
    baseline_assignment,
    price,
    sim_costs,
    synthetic,
)
from tests.optimizer.engine.reference import problem_of, reference_price, two_plan_catalogue


def test_pooled_plan_shares_one_allowance_and_rounds_blocks_up():
    cat = two_plan_catalogue()
    # Three SIMs on the pooled SMALL plan: 30 MB allowance, 35 MB used -> 5 MB over = 3 blocks of 2 MB.
    pr = problem_of(cat, [0.0, 15.0, 20.0])
    p = price(pr, [0, 0, 0])
    assert p.total == pytest.approx(3 * 5.0 + 3 * 0.5)
    assert p.pool_blocks[0, 0] == 3


def test_individual_plan_charges_each_sim_its_own_overage():
    cat = two_plan_catalogue()
    # BIG is individual: 100 MB each; 101.5 MB -> 2 blocks of 1 MB; 50 MB -> none.
    pr = problem_of(cat, [101.5, 50.0])
    assert price(pr, [1, 1]).total == pytest.approx(2 * 20.0 + 2 * 0.2)


def test_block_boundary_tolerance_and_zero_overage():
    cat = two_plan_catalogue()
    pr = problem_of(cat, [110.0, 100.0 + 1e-12])
    # Exactly 10 MB over is 10 blocks, not 11; a float hair over the allowance is no block at all.
    assert price(pr, [1, 1]).total == pytest.approx(2 * 20.0 + 10 * 0.2)


def test_pools_are_per_group_and_plan():
    cat = two_plan_catalogue()
    pr = problem_of(cat, [20.0, 0.0], group=[0, 1], groups=2)
    # Together they would fit 20 MB in 2 x 10 MB; apart, group 0's SIM is 10 MB over = 5 blocks.
    p = price(pr, [0, 0])
    assert p.per_group.tolist() == pytest.approx([5.0 + 5 * 0.5, 5.0])
    assert p.total == pytest.approx(reference_price(pr, [0, 0]))


def test_proration_scales_charge_and_allowance_not_fees():
    cat = two_plan_catalogue(fee=(1.0, 1.0))
    pr = problem_of(cat, [8.0], billing=Billing(30, 15, True))
    # Half a cycle: 2.5 charge + 1.0 fee, 5 MB allowance, 3 MB over -> 2 blocks of 2 MB.
    assert price(pr, [0]).total == pytest.approx(2.5 + 1.0 + 2 * 0.5)
    # Without the prorate flag nothing scales.
    pr2 = problem_of(cat, [8.0], billing=Billing(30, 15, False))
    assert price(pr2, [0]).total == pytest.approx(6.0)


@pytest.mark.parametrize(("charge_type", "expected"), [("both", 5.0 + 1.0 + 3 * 0.5), ("rate", 6.0), ("overage", 1.5)])
def test_charge_type_narrows_what_is_counted(charge_type, expected):
    cat = two_plan_catalogue(fee=(1.0, 1.0))
    pr = problem_of(cat, [15.0], charge_type=charge_type)
    assert price(pr, [0]).total == pytest.approx(expected)


def test_breakdowns_add_up_and_match_reference_on_a_fleet():
    pr = synthetic.fleet(3000, pooled="mixed", groups=3, seed=4, prorate=True, fee_per_sim=0.3)
    for assignment in (pr.current_plan, baseline_assignment(pr)):
        p = price(pr, assignment)
        assert p.total == pytest.approx(reference_price(pr, assignment), rel=1e-12)
        assert p.per_group.sum() == pytest.approx(p.total, rel=1e-12)
        assert p.per_plan.sum() == pytest.approx(p.total, rel=1e-12)
        assert p.rate + p.overage == pytest.approx(p.total, rel=1e-12)


def test_sim_costs_sum_to_the_price_and_overage_follows_usage_above_allowance():
    cat = two_plan_catalogue()
    pr = problem_of(cat, [0.0, 15.0, 25.0])
    costs = sim_costs(pr, [0, 0, 0])
    # Pool: 40 used of 30 -> 5 blocks = 2.5; SIM 2 is 5 MB and SIM 3 15 MB above 10 MB: shares 1/4 and 3/4.
    assert costs.tolist() == pytest.approx([5.0, 5.0 + 2.5 * 0.25, 5.0 + 2.5 * 0.75])
    pr2 = synthetic.fleet(2000, pooled="mixed", groups=2, seed=5)
    c = sim_costs(pr2, pr2.current_plan)
    assert c.sum() == pytest.approx(price(pr2, pr2.current_plan).total, rel=1e-12)


def test_unknown_current_plan_is_unpriced_not_free():
    pr = synthetic.fleet(500, seed=6, unknown_current=0.2)
    p = price(pr, pr.current_plan)
    unknown = pr.current_plan < 0
    assert p.unpriced == unknown.sum() > 0
    c = sim_costs(pr, pr.current_plan)
    assert np.isnan(c[unknown]).all() and np.isfinite(c[~unknown]).all()
    assert np.nansum(c) == pytest.approx(p.total, rel=1e-12)












