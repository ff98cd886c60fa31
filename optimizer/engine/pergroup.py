"""The per-group loop both solvers share: which groups are skipped and why, and one Solution from the groups' answers."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from .model import Problem, Solution
from .pricing import PlanTerms, group_cost, plan_terms, price


def group_skip_reason(n_plans: int, max_plans: int | None) -> str | None:
    """Why a group gets no computed assignment (its SIMs keep their current plan), or None."""
    if n_plans == 0:
        return "no rate plans"
    if max_plans is not None and n_plans > max_plans:
        return f"{n_plans} rate plans > limit {max_plans}"
    return None


@dataclass(frozen=True, eq=False)
class Group:
    """One group to solve: its SIMs (positions in the problem, input order) and the plans it allows."""

    index: int
    name: str
    members: np.ndarray
    plans: np.ndarray
    terms: PlanTerms
    progress: Callable[[float], None]  # call with the fraction of this group's work done


@dataclass(frozen=True, eq=False)
class GroupAnswer:
    plan: np.ndarray  # plan index per member, members in input order
    strategy: str
    sequence: tuple[str, ...] | None = None
    bound: float | None = None
    # The bound's multiplier per catalogue plan (NaN where none), when the group's bound has them.
    multipliers: np.ndarray | None = None


def solve_per_group(
    problem: Problem,
    solve_group: Callable[[Group], GroupAnswer],
    *,
    method: str,
    max_plans: int | None,
    bounded: bool,
    progress: Callable[[float], None] | None = None,
) -> Solution:
    """Solve every group with SIMs and plans by `solve_group`; one Solution of the whole problem.

    A group with no allowed plan, or more than `max_plans` when a limit is set, is skipped: its SIMs
    keep their current plan (-1 where unknown).  When `bounded`, the solution carries a lower bound per
    group: the answer's for solved groups, the fixed cost of skipped ones, 0 for groups without SIMs.
    """
    started = perf_counter()
    terms = plan_terms(problem)
    G, N = problem.n_groups, problem.n_sims
    by_group = np.argsort(problem.group, kind="stable")
    starts = np.searchsorted(problem.group[by_group], np.arange(G + 1))
    assignment = problem.current_plan.astype(np.int64).copy()
    group_bound = np.zeros(G)
    multipliers = np.full((G, problem.n_plans), np.nan)
    skipped: list[int] = []
    strategy: list[str] = []
    sequence: list[tuple[str, ...] | None] = []
    notes: list[str] = []
    done = 0

    def report(fraction: float) -> None:
        if progress is not None:
            progress(fraction)

    for g in range(G):
        members = by_group[starts[g] : starts[g + 1]]  # ascending position: input order
        if members.size == 0:
            strategy.append("no SIMs")
            sequence.append(None)
            continue
        plans = np.flatnonzero(problem.allowed[g])
        name = problem.group_name(g)
        why = group_skip_reason(plans.size, max_plans)
        if why:
            skipped.append(g)
            notes.append(f"group {name}: skipped ({why}); SIMs keep their current plan")
            strategy.append(f"skipped: {why}")
            sequence.append(None)
            if bounded:
                f = None if problem.factor is None else problem.factor[members]
                group_bound[g] = group_cost(terms, problem.usage_mb[members], assignment[members], f)
        else:

            def within(fraction, done=done, size=members.size):
                report((done + fraction * size) / max(N, 1))

            answer = solve_group(Group(g, name, members, plans, terms, within))
            assignment[members] = answer.plan
            strategy.append(answer.strategy)
            sequence.append(answer.sequence)
            if bounded:
                group_bound[g] = answer.bound
            if answer.multipliers is not None:
                multipliers[g] = answer.multipliers
        done += members.size
        report(done / max(N, 1))

    pr = price(problem, assignment)
    report(1.0)
    return Solution(
        assignment=assignment.astype(np.int32),
        total_cost=pr.total,
        lower_bound=float(group_bound.sum()) if bounded else None,
        group_cost=pr.per_group,
        group_bound=group_bound if bounded else None,
        method=method,
        seconds=perf_counter() - started,
        skipped_groups=tuple(skipped),
        winning_strategy=tuple(strategy),
        winning_sequence=tuple(sequence),
        notes=tuple(notes),
        changes=count_changes(problem, assignment),
        multipliers=multipliers if bounded else None,
    )


def count_changes(problem: Problem, assignment) -> int:
    """SIMs whose plan in `assignment` differs from their current plan (an unknown current plan differs)."""
    return int(np.count_nonzero(np.asarray(assignment) != problem.current_plan))
