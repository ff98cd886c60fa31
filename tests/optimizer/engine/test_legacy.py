"""Legacy method: rate pool sequences, the four walk strategies against a SIM-by-SIM reference, limits and baseline."""
import math
from itertools import permutations

import numpy as np
import pytest

from optimizer.engine import (
    NO_GROUPING,
    Billing,
    Catalogue,
    Problem,
    ProblemError,
    baseline_assignment,
    legacy_evaluate_sequences,
    price,
    rate_pool_sequences,
    solve_legacy,
    synthetic,
)
from tests.optimizer.engine.reference import reference_price


def reference_walk(problem: Problem, group: int, seq, grouping: str, direction: str) -> np.ndarray:
    """The inferred legacy walk, one SIM at a time, straight from legacy-behaviour.md section 5."""
    cat = problem.catalogue
    f = problem.billing.factor
    plans = sorted(np.flatnonzero(problem.allowed[group]), key=lambda p: (f * cat.included_mb[p], f * cat.monthly_cost[p] + cat.fee_per_sim[p], p))
    max_avg = {}
    for k, p in enumerate(plans):
        larger = [q for q in plans[k + 1 :] if cat.included_mb[q] > cat.included_mb[p]]
        if not larger:
            max_avg[p] = math.inf
        else:
            q = larger[0]
            charge = (f * cat.monthly_cost[q] + cat.fee_per_sim[q]) - (f * cat.monthly_cost[p] + cat.fee_per_sim[p])
            max_avg[p] = f * cat.included_mb[p] + charge / cat.overage_rate[p] * cat.overage_block_mb[p]
    members = np.flatnonzero(problem.group == group)
    if grouping == "no grouping" or problem.comm_plan is None:
        subsets = [members]
    else:
        subsets = [members[problem.comm_plan[members] == c] for c in np.unique(problem.comm_plan[members])]
    out = np.full(problem.n_sims, -1)
    for subset in subsets:
        order = sorted(subset, key=lambda i: (problem.usage_mb[i], i))
        if direction == "largest usage first":
            order = order[::-1]
        k, count, used = 0, 0, 0.0
        for i in order:
            u = problem.usage_mb[i]
            while not (k == len(seq) - 1 or (used + u) / (count + 1) <= max_avg[seq[k]]):
                k, count, used = k + 1, 0, 0.0
            out[i] = seq[k]
            count, used = count + 1, used + u
    return out[members]


STRATEGIES = [(g, d) for g in ("no grouping", "by communication plan") for d in ("largest usage first", "smallest usage first")]


@pytest.mark.parametrize("seed", range(6))
def test_walk_matches_sim_by_sim_reference(seed):
    pooled = ("all", "mixed", "none")[seed % 3]
    pr = synthetic.fleet(400, pooled=pooled, groups=2, seed=seed, comm_plans=3, prorate=seed % 2 == 1, fee_per_sim=0.2)
    for g in range(pr.n_groups):
        plans = np.flatnonzero(pr.allowed[g])
        seqs = rate_pool_sequences(plans, pr.catalogue, limit=6)
        rng = np.random.default_rng(seed)
        seqs += [tuple(rng.permutation(plans)) for _ in range(4)]
        members = pr.group == g
        for seq in seqs:
            best = legacy_evaluate_sequences(pr, g, [seq])
            ref_costs = []
            for grouping, direction in STRATEGIES:
                walk = reference_walk(pr, g, seq, grouping, direction)
                full = pr.current_plan.astype(np.int64).copy()
                full[members] = walk
                ref_costs.append(price(pr, full).per_group[g])
            assert best.cost == pytest.approx(min(ref_costs), rel=1e-12)
            full = pr.current_plan.astype(np.int64).copy()
            full[members] = best.assignment
            assert price(pr, full).per_group[g] == pytest.approx(best.cost, rel=1e-12)
            assert reference_price(pr, full) == pytest.approx(price(pr, full).total, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_no_grouping_only_takes_the_best_of_the_two_ungrouped_walks(seed):
    """Mobility accounts (legacy-behaviour.md section 8): SIMs one by one, never by communication plan."""
    pr = synthetic.fleet(400, pooled=("all", "mixed")[seed % 2], groups=1, seed=seed, comm_plans=3)
    plans = np.flatnonzero(pr.allowed[0])
    rng = np.random.default_rng(seed)
    seqs = [tuple(rng.permutation(plans)) for _ in range(5)]
    best = legacy_evaluate_sequences(pr, 0, seqs, groupings=NO_GROUPING)
    ref = min(price(pr, reference_walk(pr, 0, seq, "no grouping", d)).total for seq in seqs
              for d in ("largest usage first", "smallest usage first"))
    assert best.strategy[0] == "no grouping" and best.cost == pytest.approx(ref, rel=1e-12)
    every = legacy_evaluate_sequences(pr, 0, seqs)
    assert every.cost <= best.cost
    with pytest.raises(ProblemError, match="groupings"):
        legacy_evaluate_sequences(pr, 0, seqs, groupings=("by customer",))


def test_rate_pool_sequences_are_capped_permutations_starting_from_the_ladder():
    cat = synthetic.m2m_catalogue()
    four = rate_pool_sequences([7, 2, 0, 5], cat)
    assert len(four) == 24 == len(set(four))
    assert four[0] == (0, 2, 5, 7)
    assert set(four) == set(permutations([0, 2, 5, 7]))
    twelve = rate_pool_sequences(range(12), cat)
    assert len(twelve) == 1000 == len(set(twelve))
    assert rate_pool_sequences(range(12), cat, limit=10) == twelve[:10]
    assert rate_pool_sequences([], cat) == []


def test_slices_of_sequences_combine_to_the_whole():
    pr = synthetic.fleet(1500, pooled="mixed", seed=3, comm_plans=2)
    seqs = rate_pool_sequences(np.flatnonzero(pr.allowed[0]), pr.catalogue, limit=300)
    whole = legacy_evaluate_sequences(pr, 0, seqs)
    parts = [legacy_evaluate_sequences(pr, 0, seqs[i : i + 70]) for i in range(0, 300, 70)]
    assert min(p.cost for p in parts) == pytest.approx(whole.cost)
    cost, assignment, description = whole  # the 3-tuple the session pipeline unpacks
    assert assignment.shape == ((pr.group == 0).sum(),)
    assert "sequence" in description and whole.sequence in seqs


def test_bad_sequences_are_refused():
    pr = synthetic.fleet(100, groups=2, seed=4)
    plans = np.flatnonzero(pr.allowed[1])
    outside = int(np.flatnonzero(~pr.allowed[1])[0])
    with pytest.raises(ProblemError, match="does not allow"):
        legacy_evaluate_sequences(pr, 1, [tuple(plans[:-1]) + (outside,)])
    with pytest.raises(ProblemError, match="exactly once"):
        legacy_evaluate_sequences(pr, 1, [tuple(plans[:-1])])


def test_baseline_uses_prorated_allowance_and_only_allowed_plans():
    cat = Catalogue(("A", "B", "C"), np.array([1.0, 2.0, 3.0]), np.array([10.0, 40.0, 100.0]),
                    np.ones(3), np.ones(3), np.zeros(3), np.ones(3, bool))
    pr = Problem(cat, np.array([18.0, 60.0, 60.0]), np.array([0, 0, 1], np.int32),
                 np.array([[True, True, True], [True, False, True]]), Billing(30, 15, True))
    # Half a cycle: allowances 5, 20, 50.  18 -> B (20); 60 -> C (50); group 1 cannot use B.
    assert baseline_assignment(pr).tolist() == [1, 2, 2]


def test_strictly_cheaper_rule_keeps_the_baseline_on_ties():
    cat = Catalogue(("ONLY",), np.array([3.0]), np.array([10.0]), np.array([0.5]), np.ones(1), np.zeros(1), np.ones(1, bool))
    pr = Problem(cat, np.array([1.0, 30.0, 5.0, 0.0]), np.zeros(4, np.int32), np.ones((1, 1), bool))
    sol = solve_legacy(pr)
    assert sol.winning_strategy == ("baseline (closest included data)",)


def test_groups_over_the_plan_limit_are_skipped_keeping_current_plans():
    pr = synthetic.fleet(600, groups=3, seed=5, unknown_current=0.2)
    sol = solve_legacy(pr, max_plans=5)
    over = [g for g in range(3) if pr.allowed[g].sum() > 5]
    assert over and list(sol.skipped_groups) == over
    for g in over:
        members = pr.group == g
        assert np.array_equal(sol.assignment[members], pr.current_plan[members])
        assert "limit" in sol.winning_strategy[g]
    assert any("skipped" in n for n in sol.notes)
    done = [g for g in range(3) if g not in over]
    for g in done:
        members = pr.group == g
        assert pr.allowed[g, sol.assignment[members]].all()


def test_groups_of_one_sim_keep_the_baseline_and_legacy_never_loses_to_it():
    pr = synthetic.fleet(1200, groups=4, seed=6)
    group = pr.group.copy()
    group[np.flatnonzero(group == 3)[1:]] = 2  # leave one SIM in group 3
    pr = Problem(pr.catalogue, pr.usage_mb, group, pr.allowed, pr.billing, pr.charge_type, pr.group_names,
                 pr.current_plan, pr.comm_plan)
    sol = solve_legacy(pr)
    base = price(pr, baseline_assignment(pr))
    assert sol.winning_strategy[3] == "baseline (0 or 1 SIM)"
    assert (sol.group_cost <= base.per_group + 1e-9).all()
    assert sol.lower_bound is None and sol.group_bound is None


def test_largest_first_is_all_or_nothing_per_plan():
    """Largest first, the running average only falls: a plan takes every SIM left or none."""
    pr = synthetic.fleet(300, seed=7, comm_plans=1)
    plans = np.flatnonzero(pr.allowed[0])
    walk = reference_walk(pr, 0, tuple(plans), "no grouping", "largest usage first")
    assert len(np.unique(walk)) == 1
