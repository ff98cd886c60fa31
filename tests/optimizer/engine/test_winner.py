"""The winner rule (engine.choose_winner) and the per-group loop (engine.solve_per_group) both solvers and finalize share."""
import numpy as np
import pytest

from optimizer.engine import (
    Candidate,
    Catalogue,
    GroupAnswer,
    Problem,
    choose_winner,
    current_plans_compete,
    group_skip_reason,
    price,
    solve_certified,
    solve_legacy,
    solve_per_group,
)


def _price_by_table(table):
    """A price function from a {tuple(assignment): cost} table, so ties are exact."""
    return lambda a: table[tuple(int(x) for x in a)]


def _current(plan):
    return Candidate(np.asarray(plan), "current", "keep current plans")


def test_tie_between_current_plans_and_a_candidate_keeps_current_plans():
    price_of = _price_by_table({(0, 1): 10.0, (1, 1): 10.0})
    win = choose_winner([Candidate(np.array([1, 1]), "certified", "certified")], current=_current([0, 1]),
                        allowed_plans=np.array([0, 1]), price=price_of)
    assert win.kept_current and win.candidate.method == "current" and win.cost == 10.0
    assert win.current_cost == 10.0 and win.costs == (10.0,)


def test_strictly_cheaper_candidate_beats_current_plans():
    price_of = _price_by_table({(0, 1): 10.0, (1, 1): 9.99})
    win = choose_winner([Candidate(np.array([1, 1]), "certified", "certified")], current=_current([0, 1]),
                        allowed_plans=np.array([0, 1]), price=price_of)
    assert not win.kept_current and win.candidate.method == "certified" and win.cost == 9.99


def test_current_plans_not_all_allowed_never_win_however_cheap():
    price_of = _price_by_table({(0, 2): 1.0, (1, 1): 50.0})
    win = choose_winner([Candidate(np.array([1, 1]), "baseline", "baseline")], current=_current([0, 2]),
                        allowed_plans=np.array([0, 1]), price=price_of)
    assert win.candidate.method == "baseline" and not win.kept_current
    assert win.current_cost is None and win.costs == (50.0,)


def test_unknown_current_plan_never_competes():
    assert not current_plans_compete(np.array([0, -1]), np.array([0, 1]))
    assert current_plans_compete(np.array([0, 1]), np.array([0, 1]))
    assert not current_plans_compete(np.array([0, 2]), np.array([0, 1]))


def test_ties_between_candidates_go_to_the_earlier_and_ref_is_kept():
    price_of = _price_by_table({(2, 2): 5.0, (1, 1): 5.0, (0, 0): 6.0})
    cands = [Candidate(np.array([0, 0]), "baseline", "b"), Candidate(np.array([1, 1]), "legacy", "l", ref=7),
             Candidate(np.array([2, 2]), "certified", "c", ref=8)]
    win = choose_winner(cands, current=_current([-1, 0]), allowed_plans=np.array([0, 1, 2]), price=price_of)
    assert win.candidate.ref == 7 and win.costs == (6.0, 5.0, 5.0)


def test_nothing_to_choose_from_is_an_error():
    with pytest.raises(ValueError):
        choose_winner([], current=_current([5]), allowed_plans=np.array([0]), price=lambda a: 0.0)


# --------------------------------------------------------------------------- the solvers use the same rule


def _one_group(current, allowed=(True, True, False)):
    # Two plans a group may use and a third, cheapest of all, that it may not.
    cat = Catalogue(("SMALL", "BIG", "CHEAP"), [5.0, 20.0, 0.5], [10.0, 100.0, 1000.0], [1.0, 1.0, 1.0],
                    [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [False, False, False])
    return Problem(cat, np.array([2.0, 80.0]), np.zeros(2, np.int32), np.array([allowed]), current_plan=np.array(current))


def test_certified_tie_with_current_plans_keeps_them():
    # Current plans already optimal: enumeration finds the same cost, and the tie keeps SIMs where they are.
    pr = _one_group([0, 1])
    sol = solve_certified(pr)
    assert sol.winning_strategy == ("kept current plans (cheapest)",)
    assert np.array_equal(sol.assignment, [0, 1])
    assert sol.total_cost == pytest.approx(25.0)


def test_certified_never_keeps_current_plans_a_group_does_not_allow():
    pr = _one_group([2, 2])
    assert price(pr, pr.current_plan).total == pytest.approx(1.0)  # cheaper than anything allowed
    sol = solve_certified(pr)
    assert sol.winning_strategy == ("exact enumeration",)
    assert np.array_equal(sol.assignment, [0, 1]) and sol.total_cost == pytest.approx(25.0)


def test_certified_picks_the_cheaper_over_worse_current_plans():
    sol = solve_certified(_one_group([1, 1]))
    assert sol.winning_strategy == ("exact enumeration",) and sol.total_cost == pytest.approx(25.0)


# --------------------------------------------------------------------------- the per-group loop


def _three_groups():
    cat = Catalogue(("A", "B"), [1.0, 3.0], [10.0, 50.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [False, False])
    # group 0: two SIMs, both plans; group 1: no SIMs; group 2: one SIM, no plan allowed (skipped).
    return Problem(cat, np.array([5.0, 40.0, 7.0]), np.array([0, 0, 2], np.int32),
                   np.array([[True, True], [True, True], [False, False]]), group_names=("g0", "g1", "g2"),
                   current_plan=np.array([1, 1, 0]))


def test_solve_per_group_skips_and_assembles_with_bounds():
    pr = _three_groups()
    seen = []

    def solve_group(group):
        seen.append((group.index, group.members.tolist(), group.plans.tolist()))
        group.progress(0.5)
        return GroupAnswer(np.array([0, 1]), "test", ("A", "B"), bound=3.5)

    progress = []
    sol = solve_per_group(pr, solve_group, method="test", max_plans=None, bounded=True, progress=progress.append)
    assert seen == [(0, [0, 1], [0, 1])]
    assert sol.assignment.tolist() == [0, 1, 0] and sol.assignment.dtype == np.int32
    assert sol.skipped_groups == (2,) and sol.winning_strategy == ("test", "no SIMs", "skipped: no rate plans")
    assert sol.winning_sequence == (("A", "B"), None, None)
    assert sol.notes == ("group g2: skipped (no rate plans); SIMs keep their current plan",)
    # Skipped groups' fixed cost counts in the bound; groups without SIMs add nothing.
    assert sol.group_bound.tolist() == [3.5, 0.0, pytest.approx(1.0)]
    assert sol.lower_bound == pytest.approx(4.5) and sol.total_cost == pytest.approx(price(pr, [0, 1, 0]).total)
    assert progress[-1] == 1.0 and progress == sorted(progress)


def test_solve_per_group_unbounded_and_plan_limit():
    pr = _three_groups()
    sol = solve_per_group(pr, lambda g: GroupAnswer(np.array([1, 1]), "x"), method="legacy", max_plans=1, bounded=False)
    assert sol.lower_bound is None and sol.group_bound is None
    assert sol.skipped_groups == (0, 2) and sol.winning_strategy[0] == "skipped: 2 rate plans > limit 1"
    assert sol.assignment.tolist() == [1, 1, 0]


def test_both_solvers_skip_the_same_groups_with_the_same_notes():
    pr = _three_groups()
    cert, legacy = solve_certified(pr, max_plans=1), solve_legacy(pr, max_plans=1)
    assert cert.skipped_groups == legacy.skipped_groups == (0, 2)
    assert cert.notes == legacy.notes and cert.winning_strategy == legacy.winning_strategy
    assert group_skip_reason(0, None) == "no rate plans" and group_skip_reason(3, 3) is None
