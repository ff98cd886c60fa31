"""The legacy method: closest-plan baseline, rate pool sequences and the four sequence-walk strategies, vectorised."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .model import Catalogue, Problem, ProblemError, Solution
from .pergroup import Group, GroupAnswer, solve_per_group
from .pricing import PlanTerms, blocks, group_cost, plan_terms

# The legacy system refused groups with more rate plans than this (an email asked to select 15 or fewer).
LEGACY_MAX_PLANS = 15
# The legacy system enumerated at most this many rate pool sequences per group.
LEGACY_MAX_SEQUENCES = 1000

STRATEGIES = (
    ("no grouping", "largest usage first"),
    ("no grouping", "smallest usage first"),
    ("by communication plan", "largest usage first"),
    ("by communication plan", "smallest usage first"),
)


# --------------------------------------------------------------------------- baseline


def closest_plans(u: np.ndarray, plans: np.ndarray, A: np.ndarray, f: np.ndarray | None = None) -> np.ndarray:
    """Per SIM, the plan of `plans` whose (prorated) allowance is closest to its usage; ties go to the smaller.

    f: per-SIM factors; the allowance compared is then f_i * A (A the full cycle's)."""
    order = np.lexsort((plans, A[plans]))
    ps = plans[order]
    if f is not None:
        out = np.empty(u.shape[0], dtype=ps.dtype)
        chunk = 200_000
        for start in range(0, u.shape[0], chunk):
            sl = slice(start, start + chunk)
            # argmin takes the first of equal distances: the smaller allowance, as below.
            out[sl] = ps[np.abs(u[sl, None] - f[sl, None] * A[ps][None, :]).argmin(axis=1)]
        return out
    As = A[ps]
    pos = np.searchsorted(As, u)
    left = np.clip(pos - 1, 0, ps.size - 1)
    right = np.clip(pos, 0, ps.size - 1)
    take_left = np.abs(u - As[left]) <= np.abs(As[right] - u)
    return np.where(take_left, ps[left], ps[right])


def baseline_assignment(problem: Problem) -> np.ndarray:
    """Legacy baseline: each SIM on the allowed plan whose included data is closest to its usage.

    The allowance compared is the prorated one, the data the SIM actually gets this cycle.  SIMs of a
    group with no allowed plan get -1; SIMs that cannot move keep their current plan.
    """
    t = plan_terms(problem)
    out = np.full(problem.n_sims, -1, dtype=np.int32)
    for g in range(problem.n_groups):
        plans = np.flatnonzero(problem.allowed[g])
        members = np.flatnonzero(problem.group == g)
        if plans.size and members.size:
            out[members] = _closest(problem, members, plans, t)
    if problem.movable is not None:
        out[~problem.movable] = problem.current_plan[~problem.movable]
    return out


def _closest(problem: Problem, positions: np.ndarray, plans: np.ndarray, t: PlanTerms) -> np.ndarray:
    u = problem.usage_mb[positions]
    if problem.factor is None:
        return closest_plans(u, plans, t.A)
    return closest_plans(u, plans, t.included, problem.factor[positions])


# --------------------------------------------------------------------------- rate pool sequences


def rate_pool_sequences(plan_indices, catalogue: Catalogue, limit: int = LEGACY_MAX_SEQUENCES) -> list[tuple[int, ...]]:
    """Orderings of a group's plans, as the legacy enumerated them: permutations, the first `limit` of them.

    Plans start from smallest allowance up, so the first sequence is the natural ladder and the cap cuts
    off orderings that only shuffle the largest plans last.
    """
    plans = sorted((int(p) for p in plan_indices), key=lambda p: (catalogue.included_mb[p], p))
    if not plans:
        return []
    return list(itertools.islice(itertools.permutations(plans), max(0, int(limit))))


def max_average_usage(plans: np.ndarray, catalogue: Catalogue, factor: float) -> dict[int, float]:
    """Break-even average usage of each plan against the next larger one of the group (inf for the largest).

    included + (next monthly - monthly) / overage rate * block, on prorated charge and allowance plus fee;
    computed from the plan fields as the legacy did, whatever the charge type.
    """
    A = factor * catalogue.included_mb
    c = factor * catalogue.monthly_cost + catalogue.fee_per_sim
    ordered = sorted((int(p) for p in plans), key=lambda p: (A[p], c[p], p))
    out: dict[int, float] = {}
    for i, p in enumerate(ordered):
        nxt = next((q for q in ordered[i + 1 :] if A[q] > A[p]), None)
        if nxt is None:
            out[p] = np.inf
        else:
            out[p] = A[p] + (c[nxt] - c[p]) / catalogue.overage_rate[p] * catalogue.overage_block_mb[p]
    return out


# --------------------------------------------------------------------------- the sequence walk


@dataclass
class _Walk:
    """One ordering of a set of SIMs with prefix sums, ready for walking many sequences at once."""

    order: np.ndarray  # positions (into the group's SIM arrays) in walk order
    S: np.ndarray  # prefix sums of usage in walk order, length n+1
    C: np.ndarray  # prefix sums of individual-plan costs, (n+1, k_individual)
    ascending: bool
    W: np.ndarray | None = None  # prefix sums of the SIMs' factors (None: every SIM has the billing factor)


def _make_walk(u: np.ndarray, positions: np.ndarray, indiv: np.ndarray, ascending: bool, f=None) -> _Walk:
    pos = positions[np.argsort(u[positions], kind="stable")]
    if not ascending:
        pos = pos[::-1]
    w = u[pos]
    S = np.concatenate([[0.0], np.cumsum(w)])
    C = np.vstack([np.zeros((1, indiv.shape[1])), np.cumsum(indiv[pos], axis=0)]) if indiv.shape[1] else None
    W = None if f is None else np.concatenate([[0.0], np.cumsum(f[pos])])
    return _Walk(pos, S, C, ascending, W)


def _run_ends(walk: _Walk, seq_local: np.ndarray, maxavg: np.ndarray) -> np.ndarray:
    """Run boundaries (n_seq, m+1): plan k of each sequence takes walk positions [ends[:, k], ends[:, k+1]).

    Inferred legacy rule: a SIM joins the current plan while the plan's average usage, the SIM included,
    stays within its max average usage; otherwise the walk moves to the next plan and tries the SIM
    there; the last plan takes the rest.  Smallest-first, the running average only grows, so each run is
    found by bisection; largest-first it only shrinks, so a plan takes everything left or nothing.
    """
    n_seq, m = seq_local.shape
    n = walk.S.shape[0] - 1
    ends = np.zeros((n_seq, m + 1), dtype=np.int64)
    start = np.zeros(n_seq, dtype=np.int64)
    S = walk.S
    for k in range(m):
        if k == m - 1:
            end = np.full(n_seq, n, dtype=np.int64)
        else:
            M = maxavg[seq_local[:, k]]
            if walk.ascending:
                lo, hi = start.copy(), np.full(n_seq, n + 1, dtype=np.int64)
                while True:
                    active = hi - lo > 1
                    if not active.any():
                        break
                    mid = (lo + hi) // 2
                    midc = np.minimum(mid, n)
                    run = S[midc] - S[start]
                    with np.errstate(invalid="ignore"):  # inf * 0 on finished rows, masked below
                        ok = run <= (midc - start) * M + 1e-9 * (1.0 + np.abs(run))
                    lo = np.where(active & ok, mid, lo)
                    hi = np.where(active & ~ok, mid, hi)
                end = lo
            else:
                first = S[np.minimum(start + 1, n)] - S[start]
                end = np.where((start < n) & (first <= M), n, start)
        ends[:, k + 1] = end
        start = end
    return ends


def _sequence_costs(walks, seq_local, maxavg, K, A, r, b, linear, indiv_col, fixed=None) -> np.ndarray:
    """Price of every sequence under one strategy (one walk per communication plan, pools shared).

    With per-SIM factors K and A are the full cycle's monthly charge and allowance and fixed carries the
    fees; fixed also holds what SIMs that stay put add to each plan's pool (count, usage, charge, allowance).
    """
    n_seq, m = seq_local.shape
    k = K.shape[0]
    cnt = np.zeros((n_seq, k))
    use = np.zeros((n_seq, k))
    fac = np.zeros((n_seq, k))
    indiv_cost = np.zeros((n_seq, k))
    rows = np.repeat(np.arange(n_seq), m)
    plan_of = seq_local.ravel()
    for walk in walks:
        ends = _run_ends(walk, seq_local, maxavg)
        lo, hi = ends[:, :-1].ravel(), ends[:, 1:].ravel()
        np.add.at(cnt, (rows, plan_of), (hi - lo).astype(np.float64))
        np.add.at(use, (rows, plan_of), walk.S[hi] - walk.S[lo])
        if walk.W is not None:
            np.add.at(fac, (rows, plan_of), walk.W[hi] - walk.W[lo])
        if walk.C is not None:
            col = indiv_col[plan_of]
            has = col >= 0
            np.add.at(
                indiv_cost,
                (rows[has], plan_of[has]),
                walk.C[hi[has], col[has]] - walk.C[lo[has], col[has]],
            )
    if fixed is None:
        pooled_cost = np.where(cnt > 0, cnt * K[None, :] + r[None, :] * blocks(use - cnt * A[None, :], b[None, :]), 0.0)
    else:
        n0, U0, C0, A0, fee = fixed
        F = fac if walks[0].W is not None else cnt
        charge = F * K[None, :] + cnt * fee[None, :] + C0[None, :]
        excess = use + U0[None, :] - F * A[None, :] - A0[None, :]
        pooled_cost = np.where(cnt + n0[None, :] > 0, charge + r[None, :] * blocks(excess, b[None, :]), 0.0)
    return np.where(linear[None, :], pooled_cost, indiv_cost).sum(axis=1)


def _walk_assignment(walks, seq_local, maxavg, n) -> np.ndarray:
    out = np.zeros(n, dtype=np.int64)  # positions no walk covers (SIMs that stay put) are set by the caller
    for walk in walks:
        ends = _run_ends(walk, seq_local[None, :], maxavg)[0]
        for k in range(seq_local.shape[0]):
            out[walk.order[ends[k] : ends[k + 1]]] = seq_local[k]
    return out


class LegacyBest(tuple):
    """(cost, assignment, description) of the best sequence/strategy, plus .sequence and .strategy."""

    def __new__(cls, cost, assignment, description, sequence=None, strategy=None):
        obj = super().__new__(cls, (cost, assignment, description))
        obj.sequence = sequence
        obj.strategy = strategy
        return obj

    @property
    def cost(self) -> float:
        return self[0]

    @property
    def assignment(self) -> np.ndarray:
        return self[1]

    @property
    def description(self) -> str:
        return self[2]


def _describe(catalogue: Catalogue, seq: tuple[int, ...], strategy: tuple[str, str]) -> str:
    return f"sequence {' > '.join(catalogue.plan_ids[p] for p in seq)}; {strategy[0]}; {strategy[1]}"


def _group_context(problem: Problem, group_index: int, positions: np.ndarray, t: PlanTerms):
    plans = np.flatnonzero(problem.allowed[group_index])
    u = problem.usage_mb[positions]
    linear = t.pooled[plans] & (t.s[plans] > 0)
    indiv_plans = plans[~linear]
    f = None if problem.factor is None else problem.factor[positions][:, None]
    indiv = t.charge(indiv_plans[None, :], f) + t.r[indiv_plans][None, :] * blocks(
        u[:, None] - t.allowance(indiv_plans[None, :], f), t.b[indiv_plans][None, :]
    )
    indiv_col = np.full(plans.size, -1, dtype=np.int64)
    indiv_col[~linear] = np.arange(indiv_plans.size)
    return plans, u, linear, indiv, indiv_col


NO_GROUPING = ("no grouping",)  # the strategies that take SIMs one by one (legacy Mobility optimizations)


def legacy_evaluate_sequences(problem: Problem, group_index: int, sequences, *, terms: PlanTerms | None = None,
                              groupings: tuple[str, ...] | None = None) -> LegacyBest:
    """Best of the four strategies over `sequences` (tuples of catalogue plan indices) for one group.

    groupings limits the strategies to those groupings ("no grouping", "by communication plan"; None: all).

    The assignment covers the group's SIMs in their original order, i.e. aligned with
    np.flatnonzero(problem.group == group_index).  Among equal costs the first found wins (sequence order,
    then strategy order), as the legacy kept a result only when strictly cheaper.  A slice of a group's
    sequences can be evaluated on its own; the cheapest over slices is the cheapest over all.
    """
    known = {grouping for grouping, _ in STRATEGIES}
    if groupings is not None and (not groupings or set(groupings) - known):
        raise ProblemError(f"groupings must be some of {sorted(known)}, got {list(groupings)}")
    t = terms if terms is not None else plan_terms(problem)
    positions = np.flatnonzero(problem.group == group_index)
    sequences = [tuple(int(p) for p in s) for s in sequences]
    if not sequences or positions.size == 0:
        return LegacyBest(np.inf, None, "no sequences", None, None)
    plans, u, linear, indiv, indiv_col = _group_context(problem, group_index, positions, t)
    local = {int(p): i for i, p in enumerate(plans)}
    try:
        seq_local = np.array([[local[p] for p in s] for s in sequences], dtype=np.int64)
    except KeyError as exc:
        raise ProblemError(f"sequence uses plan {exc.args[0]} which group {group_index} does not allow") from None
    if seq_local.shape[1] != plans.size or np.any(np.sort(seq_local, axis=1) != np.arange(plans.size)):
        raise ProblemError("each rate pool sequence must list every plan of the group exactly once")
    mavg = max_average_usage(plans, problem.catalogue, problem.billing.factor)
    maxavg = np.array([mavg[int(p)] for p in plans])
    f = None if problem.factor is None else problem.factor[positions]
    movable = problem.movable_mask[positions]
    fixed = None
    if f is None:
        K, A, r, b = t.K[plans], t.A[plans], t.r[plans], t.b[plans]
    else:
        K, A, r, b = t.monthly[plans], t.included[plans], t.r[plans], t.b[plans]
    if f is not None or not movable.all():
        # SIMs that stay put walk nowhere; on a pooled plan of the group they count in its pool.
        stay = np.flatnonzero(~movable)
        cur = problem.current_plan[positions[stay]]
        local_cur = np.searchsorted(plans, cur)
        ok = (local_cur < plans.size) & (plans[np.minimum(local_cur, plans.size - 1)] == cur)
        ok &= linear[np.minimum(local_cur, plans.size - 1)]
        q, st = local_cur[ok], stay[ok]
        fs = None if f is None else f[st]
        k = plans.size
        fixed = (
            np.bincount(q, minlength=k).astype(np.float64),
            np.bincount(q, weights=u[st], minlength=k),
            np.bincount(q, weights=t.charge(plans[q], fs), minlength=k),
            np.bincount(q, weights=t.allowance(plans[q], fs), minlength=k),
            np.zeros(k) if f is None else t.fee[plans],
        )

    walk_pos = np.flatnonzero(movable)
    comm = problem.comm_plan[positions] if problem.comm_plan is not None else None
    comm_values = np.unique(comm[walk_pos]) if comm is not None else np.array([0])
    strategy_walks = []
    for grouping, direction in STRATEGIES:
        if groupings is not None and grouping not in groupings:
            continue
        asc = direction == "smallest usage first"
        if grouping == "no grouping":
            walks = [_make_walk(u, walk_pos, indiv, asc, f)]
        else:
            if comm is None or comm_values.size <= 1:
                if groupings is None or "no grouping" in groupings:
                    continue  # identical to the ungrouped strategy, already evaluated
                walks = [_make_walk(u, walk_pos, indiv, asc, f)]
            else:
                walks = [_make_walk(u, walk_pos[comm[walk_pos] == c], indiv, asc, f) for c in comm_values]
        strategy_walks.append(((grouping, direction), walks))

    costs = np.stack(
        [_sequence_costs(walks, seq_local, maxavg, K, A, r, b, linear, indiv_col, fixed) for _, walks in strategy_walks],
        axis=1,
    )
    # Sequence-major, strategy-minor: the order the legacy visited results in.
    flat = int(np.argmin(costs.ravel()))
    si, sj = divmod(flat, costs.shape[1])
    strategy, walks = strategy_walks[sj]
    local_plan = _walk_assignment(walks, seq_local[si], maxavg, positions.size)
    assignment = plans[local_plan].astype(np.int32)
    assignment[~movable] = problem.current_plan[positions[~movable]]
    cost = group_cost(t, u, assignment, f)
    return LegacyBest(cost, assignment, _describe(problem.catalogue, sequences[si], strategy), sequences[si], strategy)


# --------------------------------------------------------------------------- one group, whole problem


@dataclass
class LegacyGroupResult:
    cost: float
    plan: np.ndarray  # plan per SIM of the group, in input order (np.flatnonzero(problem.group == g))
    description: str
    sequence: tuple[str, ...] | None


def legacy_best_for_group(problem: Problem, g: int, *, max_sequences: int, terms: PlanTerms) -> LegacyGroupResult | None:
    """The legacy winner for group g (baseline included); None when the group has no plans or SIMs.

    SIMs that cannot move stay on their current plan in every candidate."""
    plans = np.flatnonzero(problem.allowed[g])
    positions = np.flatnonzero(problem.group == g)
    if plans.size == 0 or positions.size == 0:
        return None
    u = problem.usage_mb[positions]
    f = None if problem.factor is None else problem.factor[positions]
    base = _closest(problem, positions, plans, terms)
    movable = problem.movable_mask[positions]
    base[~movable] = problem.current_plan[positions[~movable]]
    best_cost = group_cost(terms, u, base, f)
    best_assign, desc, seq = base, "baseline (closest included data)", None
    if int(movable.sum()) > 1:
        sequences = rate_pool_sequences(plans, problem.catalogue, limit=max_sequences)
        lb = legacy_evaluate_sequences(problem, g, sequences, terms=terms)
        if lb.cost < best_cost:
            best_cost, best_assign, desc = lb.cost, lb.assignment, lb.description
            seq = tuple(problem.catalogue.plan_ids[p] for p in lb.sequence)
    return LegacyGroupResult(best_cost, np.asarray(best_assign, dtype=np.int64), desc, seq)


def solve_legacy(
    problem: Problem,
    *,
    max_sequences: int = LEGACY_MAX_SEQUENCES,
    max_plans: int | None = LEGACY_MAX_PLANS,
    progress=None,
) -> Solution:
    """The legacy method end to end: per group the cheapest of the baseline and every sequence x strategy.

    Groups of 0 or 1 SIM keep the baseline.  Groups with more than `max_plans` plans (or none) are
    skipped as the legacy did: their SIMs keep the current plan, -1 where it is unknown.
    """

    def solve_one(group: Group) -> GroupAnswer:
        res = legacy_best_for_group(problem, group.index, max_sequences=max_sequences, terms=group.terms)
        return GroupAnswer(res.plan, res.description if group.members.size > 1 else "baseline (0 or 1 SIM)",
                           res.sequence)

    return solve_per_group(problem, solve_one, method="legacy", max_plans=max_plans, bounded=False, progress=progress)
