"""A change budget: at most K SIMs end on a plan other than their current one (shared/spec/cost-model.md,
"objective": {"max_changes": K}), and the savings-versus-changes frontier over budgets 0 .. the unconstrained
answer's changes.

Answers.  The unconstrained (certified) answer x* changes a set D of SIMs.  The answers under a budget
are prefixes of one order of D: starting from the current plans, the SIMs of D are moved to their plan in
x* a batch at a time, each batch the SIMs whose move saves most at that moment, priced exactly against
the pools as they then are (a pool's blocks included).  A budget K takes the cheapest prefix of at most
K moves, so the frontier's cost never rises with K, its last point is x* (or cheaper), and the answer of
every point is a prefix of one order: `rank` per SIM says at which position it moves.

Bound.  For multipliers 0 <= lambda <= r/b per pool scope and pooled plan, a SIM's line on plan p is
charge + lambda * (usage - allowance) (its exact cost on an individual plan), and a pool never costs less
than the sum of its members' lines.  With a price mu >= 0 on each change,
    sum_i min(line_i(current), min_{p != current} line_i(p) + mu) - mu * K
is below the cost of every assignment with at most K changes; for one lambda the best mu leaves
    sum_i line_i(current) - (the K largest positive savings line_i(current) - min_{p != current} line_i(p)),
so one evaluation of lambda bounds every budget at once.  The multipliers of each budget are found by
supergradient ascent on a fixed random sample of the SIMs (from the unconstrained answer's and those the
pools of the budget's answer suggest), and every set found is then evaluated on every SIM; a budget's
bound is the best of them, of the larger budgets' (a larger budget's problem has more answers, so its
bound holds for a smaller one) and of the unconstrained problem's bound (every budgeted problem is a
restriction of it).

Who counts.  SIMs that cannot move (movable 0) and SIMs of skipped groups keep their plan and never
count as changes.  A SIM that must move (no current plan, or one its group no longer allows) is a change
in every answer: budgets below their number are refused.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from .model import Problem, ProblemError, Solution
from .pergroup import count_changes
from .pricing import BLOCK_EPS, PlanTerms, blocks, plan_terms, price

# Moves of the path are priced against the pools at least this many times from first to last.
PATH_STEPS = 128
# SIMs per chunk when lines of every plan are evaluated for every SIM (memory: chunk x plans floats).
CHUNK = 131_072
# The bound's multipliers are searched on this many SIMs drawn at random (fixed seed), then evaluated on all.
SAMPLE = 16_384
SEED = 20261203
# Supergradient steps per budget.
ASCENT_STEPS = 30
# Relative margin taken off every bound (float summation order), as the certified solver does.
BOUND_MARGIN = 1e-9


@dataclass(frozen=True, eq=False)
class FrontierPoint:
    max_changes: int
    total_cost: float
    lower_bound: float
    changes: int  # moves this budget's answer makes (<= max_changes)

    @property
    def gap(self) -> float | None:
        if self.lower_bound is None or self.lower_bound <= 0:
            return None
        return (self.total_cost - self.lower_bound) / self.lower_bound


@dataclass(frozen=True, eq=False)
class Frontier:
    """Cost and bound per change budget, and the order of moves every budget's answer is a prefix of.

    rank: per SIM, its position in the order of moves (-1: never moves); target: the plan it moves to
    (its current plan where rank is -1).  The answer of a point with `changes` = k moves the SIMs of rank
    < k.  reference is the unconstrained answer the moves come from.
    """

    points: tuple[FrontierPoint, ...]
    rank: np.ndarray
    target: np.ndarray
    current: np.ndarray
    reference: Solution
    forced: int  # SIMs that must move in every answer (no current plan, or one no longer allowed)
    seconds: float

    def assignment(self, changes: int) -> np.ndarray:
        """The answer making the first `changes` moves of the order."""
        a = self.current.astype(np.int64).copy()
        on = (self.rank >= 0) & (self.rank < changes)
        a[on] = self.target[on]
        return a.astype(np.int32)

    def point(self, max_changes: int) -> FrontierPoint:
        for p in self.points:
            if p.max_changes == max_changes:
                return p
        raise KeyError(max_changes)


# --------------------------------------------------------------------------- who may move where


@dataclass(frozen=True, eq=False)
class _Setup:
    t: PlanTerms
    scope: np.ndarray  # pool scope per SIM (group, or pool key)
    S: int
    fixed: np.ndarray  # keeps its plan, never a change
    forced: np.ndarray  # must move
    free: np.ndarray  # may stay or move
    f: np.ndarray | None
    s_cap: np.ndarray  # r / b per plan
    linear: np.ndarray  # pooled plans (lines with a multiplier)


def _setup(problem: Problem, skipped: tuple[int, ...]) -> _Setup:
    t = plan_terms(problem)
    cur = problem.current_plan
    in_skipped = np.isin(problem.group, np.asarray(skipped, dtype=np.int64))
    fixed = ~problem.movable_mask | in_skipped
    cur_ok = np.zeros(problem.n_sims, dtype=bool)
    has = cur >= 0
    cur_ok[has] = problem.allowed[problem.group[has], cur[has]]
    forced = ~fixed & ~cur_ok
    free = ~fixed & cur_ok
    if problem.pool is not None:
        scope, S = problem.pool, (int(problem.pool.max()) + 1 if problem.n_sims else 1)
    else:
        scope, S = problem.group, problem.n_groups
    return _Setup(t, scope.astype(np.int64), S, fixed, forced, free, problem.factor, t.s.copy(), t.pooled.copy())


def _multipliers(setup: _Setup, lam) -> np.ndarray:
    """(scopes, plans) multipliers clipped into [0, r/b], 0 for plans that are not pooled."""
    L = np.nan_to_num(np.asarray(lam, dtype=np.float64), nan=0.0)
    L = np.clip(L, 0.0, setup.s_cap[None, :])
    L[:, ~setup.linear] = 0.0
    return L


# --------------------------------------------------------------------------- lines and the bound


class _Lines:
    """Every SIM's lines at any multipliers: what does not depend on them is computed once.

    For SIMs idx, evaluate(L) gives the line at the current plan (0 where none; SIMs that keep their plan
    have only that one), the cheapest line over the allowed plans other than the current one (inf where
    none), and with it the bound of every budget at once (curve)."""

    def __init__(self, problem: Problem, setup: _Setup, idx: np.ndarray | None = None):
        self.problem, self.setup = problem, setup
        idx = np.arange(problem.n_sims) if idx is None else idx
        self.idx = idx
        t = setup.t
        P = problem.n_plans
        self.lin = np.flatnonzero(setup.linear)
        self.ind = np.flatnonzero(~setup.linear)
        u = problem.usage_mb[idx]
        f = None if setup.f is None else setup.f[idx][:, None]
        cur = problem.current_plan[idx].astype(np.int64)
        self.u, self.cur, self.f = u, cur, f
        self.scope = setup.scope[idx]
        self.fixed, self.forced, self.free = setup.fixed[idx], setup.forced[idx], setup.free[idx]
        ok = problem.allowed[problem.group[idx]]
        has = cur >= 0
        rows = np.arange(idx.size)
        # Plans other than the current one that a SIM may take (none for SIMs that keep their plan).
        other = ok.copy()
        other[rows[has], cur[has]] = False
        other[self.fixed] = False
        self.other_lin = other[:, self.lin]
        # Individual plans: exact costs, the cheapest other than the current plan, and the current one's.
        self.ind_best = np.full(idx.size, np.inf)
        self.cur_ind = np.zeros(idx.size)
        if self.ind.size:
            ch = t.charge(self.ind[None, :], f)
            al = t.allowance(self.ind[None, :], f)
            M = ch + t.r[self.ind][None, :] * blocks(u[:, None] - al, t.b[self.ind][None, :])
            pos = np.full(P, -1)
            pos[self.ind] = np.arange(self.ind.size)
            on_ind = has & ~setup.linear[np.maximum(cur, 0)]
            self.cur_ind[on_ind] = M[rows[on_ind], pos[cur[on_ind]]]
            self.ind_best = np.where(other[:, self.ind], M, np.inf).min(axis=1)
        self.cur_lin_pos = np.full(idx.size, -1)
        on_lin = has & setup.linear[np.maximum(cur, 0)]
        lpos = np.full(P, -1)
        lpos[self.lin] = np.arange(self.lin.size)
        self.cur_lin_pos[on_lin] = lpos[cur[on_lin]]
        if f is None:
            self.ch_lin, self.al_lin = t.K[self.lin][None, :], t.A[self.lin][None, :]
        else:
            self.ch_lin, self.al_lin = t.charge(self.lin[None, :], f), t.allowance(self.lin[None, :], f)
        self.order = np.argsort(self.scope, kind="stable")
        self.bounds = np.searchsorted(self.scope[self.order], np.arange(setup.S + 1))

    def evaluate(self, L: np.ndarray, want_choice: bool = False):
        """vc, vo (and with want_choice: per SIM the pooled line position of vo, -1 where an individual
        plan is cheaper)."""
        vc = self.cur_ind.copy()
        vo = self.ind_best.copy()
        choice = np.full(self.idx.size, -1) if want_choice else None
        Q = self.lin.size
        if Q:
            for sc in range(self.setup.S):
                rows = self.order[self.bounds[sc] : self.bounds[sc + 1]]
                if rows.size == 0:
                    continue
                lam = L[sc, self.lin][None, :]
                for start in range(0, rows.size, CHUNK):
                    r = rows[start : start + CHUNK]
                    if self.f is None:
                        V = (self.ch_lin - lam * self.al_lin) + lam * self.u[r][:, None]
                    else:
                        V = self.ch_lin[r] + lam * (self.u[r][:, None] - self.al_lin[r])
                    cp = self.cur_lin_pos[r]
                    onl = cp >= 0
                    vc[r[onl]] = V[np.flatnonzero(onl), cp[onl]]
                    V[~self.other_lin[r]] = np.inf
                    j = V.argmin(axis=1)
                    vj = V[np.arange(r.size), j]
                    better = vj < vo[r]
                    vo[r] = np.where(better, vj, vo[r])
                    if want_choice:
                        choice[r] = np.where(better, j, -1)
        return (vc, vo, choice) if want_choice else (vc, vo)

    def ascend(self, L: np.ndarray, K: int, iterations: int) -> np.ndarray:
        """Projected supergradient ascent of this budget's bound over the multipliers, from L: the best
        multipliers seen (on these SIMs)."""
        setup = self.setup
        cap = setup.s_cap[self.lin]
        best_val, best = -np.inf, L
        F = int(self.forced.sum())
        free = np.flatnonzero(self.free)
        for it in range(iterations):
            vc, vo, choice = self.evaluate(L, want_choice=True)
            d = vc[free] - vo[free]
            k = max(0, min(K - F, free.size))
            moved = np.zeros(self.idx.size, dtype=bool)
            if k:
                top = np.argpartition(-d, k - 1)[:k]
                moved[free[top[d[top] > 0]]] = True
            moved |= self.forced
            value = float(vc[~moved & (self.fixed | self.free)].sum() + vo[moved].sum())
            if value > best_val:
                best_val, best = value, L.copy()
            # Supergradient: each SIM's excess on the pooled line it takes, per scope and line.
            pos = np.where(moved, choice, self.cur_lin_pos)
            on = pos >= 0
            al = self.al_lin[0, pos[on]] if self.f is None else self.al_lin[np.flatnonzero(on), pos[on]]
            g = np.zeros((setup.S, self.lin.size))
            np.add.at(g, (self.scope[on], pos[on]), self.u[on] - al)
            scale = np.abs(g).max() if g.size else 0.0
            if scale <= 0:
                break
            step = 0.5 / np.sqrt(it + 1.0)
            Ln = L.copy()
            Ln[:, self.lin] = np.clip(L[:, self.lin] + step * cap[None, :] * g / scale, 0.0, cap[None, :])
            L = Ln
        return best

    def curve(self, L: np.ndarray, budgets: np.ndarray) -> np.ndarray:
        """The bound at multipliers L for every budget K (each >= the forced moves)."""
        vc, vo = self.evaluate(L)
        base = float(vc[self.fixed].sum()) + float(vo[self.forced].sum()) + float(vc[self.free].sum())
        d = vc[self.free] - vo[self.free]
        d = -np.sort(-d[d > 0])
        top = np.concatenate([[0.0], np.cumsum(d)])
        F = int(self.forced.sum())
        k = np.clip(np.asarray(budgets, dtype=np.int64) - F, 0, d.size)
        return base - top[k]


def _bang_bang(problem: Problem, setup: _Setup, assignment: np.ndarray) -> np.ndarray:
    """Multipliers the pools of an answer suggest: r/b for a pool above its allowance, 0 below."""
    pr = price(problem, assignment)
    excess = pr.pool_usage - pr.pool_allowance
    # price()'s pools are per group, or per pool key when pools span groups: the scopes here.
    return np.where(excess > 0, setup.s_cap[None, :], 0.0)


# --------------------------------------------------------------------------- the path of moves


def _pool_cost(t: PlanTerms, key_plan, N, U, Al, C):
    nb = np.ceil((U - Al) / t.b[key_plan] - BLOCK_EPS)
    over = np.where(U - Al > 0, np.maximum(nb, 0.0), 0.0)
    return np.where(N > 0, C + t.r[key_plan] * over, 0.0)


def _path(problem: Problem, setup: _Setup, target: np.ndarray, breaks: np.ndarray, steps: int = PATH_STEPS):
    """Order the moves of D (SIMs whose target differs from their current plan; forced ones first).

    Returns rank per SIM (-1: not in D) and the cost (pools priced exactly, summed per pool) after each
    prefix length in `cuts` (the array returned too: 0, the forced moves, every break and every step).
    """
    t = setup.t
    P = problem.n_plans
    u = problem.usage_mb
    f = setup.f
    cur = problem.current_plan.astype(np.int64)
    a = cur.copy()
    n = problem.n_sims
    sims = np.arange(n)
    charge = lambda i, p: t.charge(p, None if f is None else f[i])  # noqa: E731
    allow = lambda i, p: t.allowance(p, None if f is None else f[i])  # noqa: E731
    key_of = lambda i, p: setup.scope[i] * P + p  # noqa: E731
    SP = setup.S * P
    plan_of_key = np.tile(np.arange(P), setup.S)
    pooled_key = setup.linear[plan_of_key]

    def state(assign):
        on = (assign >= 0) & ~setup.linear[np.maximum(assign, 0)] & (assign >= 0)
        pl = (assign >= 0) & setup.linear[np.maximum(assign, 0)]
        i = sims[pl]
        k = key_of(i, assign[pl])
        N = np.bincount(k, minlength=SP).astype(np.float64)
        U = np.bincount(k, weights=u[i], minlength=SP)
        Al = np.bincount(k, weights=allow(i, assign[pl]), minlength=SP)
        C = np.bincount(k, weights=charge(i, assign[pl]), minlength=SP)
        j = sims[on]
        indiv = float((charge(j, assign[on]) + t.r[assign[on]] * blocks(u[j] - allow(j, assign[on]), t.b[assign[on]])).sum())
        return N, U, Al, C, indiv

    def indiv_cost(i, p):
        return charge(i, p) + t.r[p] * blocks(u[i] - allow(i, p), t.b[p])

    forced = sims[setup.forced & (target >= 0)]
    rest = sims[setup.free & (target != cur)]
    rank = np.full(n, -1, dtype=np.int64)
    rank[forced] = np.arange(forced.size)
    a[forced] = target[forced]
    N, U, Al, C, indiv = state(a)

    def total():
        return float(_pool_cost(t, plan_of_key, N, U, Al, C)[pooled_key].sum()) + indiv

    F = forced.size
    D = F + rest.size
    step = max(1, -(-rest.size // max(1, steps)))
    cuts = sorted({0, F, D, *[int(b) for b in breaks if F <= b <= D], *range(F, D, step)})
    cuts = np.array([c for c in cuts if c >= F], dtype=np.int64)
    costs = np.empty(cuts.size)
    costs[0] = total()
    # Per remaining SIM: where it leaves and where it goes (fixed), and its exact individual costs.
    src, dst = cur[rest], target[rest]
    src_lin, dst_lin = setup.linear[src], setup.linear[dst]
    k_src, k_dst = key_of(rest, src), key_of(rest, dst)
    ch_s, ch_d = charge(rest, src), charge(rest, dst)
    al_s, al_d = allow(rest, src), allow(rest, dst)
    ind_s = np.where(src_lin, 0.0, indiv_cost(rest, src))
    ind_d = np.where(dst_lin, 0.0, indiv_cost(rest, dst))
    ur = u[rest]
    left = np.ones(rest.size, dtype=bool)
    done = F
    for c_i in range(1, cuts.size):
        want = int(cuts[c_i] - done)
        live = np.flatnonzero(left)
        if want < live.size:
            ks, kd = k_src[live], k_dst[live]
            ps, pd = plan_of_key[ks], plan_of_key[kd]
            uu = ur[live]
            before_s = _pool_cost(t, ps, N[ks], U[ks], Al[ks], C[ks])
            after_s = _pool_cost(t, ps, N[ks] - 1, U[ks] - uu, Al[ks] - al_s[live], C[ks] - ch_s[live])
            before_d = _pool_cost(t, pd, N[kd], U[kd], Al[kd], C[kd])
            after_d = _pool_cost(t, pd, N[kd] + 1, U[kd] + uu, Al[kd] + al_d[live], C[kd] + ch_d[live])
            delta = (np.where(src_lin[live], after_s - before_s, -ind_s[live])
                     + np.where(dst_lin[live], after_d - before_d, ind_d[live]))
            pick = np.argpartition(delta, want - 1)[:want] if want < live.size else np.arange(live.size)
            pick = pick[np.argsort(delta[pick], kind="stable")]
            take = live[pick]
        else:
            take = live
        left[take] = False
        rank[rest[take]] = done + np.arange(take.size)
        done += take.size
        tl = take[src_lin[take]]
        np.subtract.at(N, k_src[tl], 1.0)
        np.subtract.at(U, k_src[tl], ur[tl])
        np.subtract.at(Al, k_src[tl], al_s[tl])
        np.subtract.at(C, k_src[tl], ch_s[tl])
        tl = take[dst_lin[take]]
        np.add.at(N, k_dst[tl], 1.0)
        np.add.at(U, k_dst[tl], ur[tl])
        np.add.at(Al, k_dst[tl], al_d[tl])
        np.add.at(C, k_dst[tl], ch_d[tl])
        indiv += float(ind_d[take].sum() - ind_s[take].sum())
        costs[c_i] = total()
    return rank, cuts, costs


# --------------------------------------------------------------------------- public


def _reference(problem: Problem, reference: Solution | None, **solve_options) -> Solution:
    if reference is not None:
        return reference
    from .certified import solve_certified

    return solve_certified(problem, **solve_options)


def budgets_for(low: int, high: int, points: int) -> np.ndarray:
    """About `points` budgets from low to high, both included, no repeats."""
    if high <= low or points <= 1:
        return np.array(sorted({low, high}), dtype=np.int64)
    return np.unique(np.round(np.linspace(low, high, points)).astype(np.int64))


def frontier(problem: Problem, *, points: int = 20, budgets=None, reference: Solution | None = None,
             extra_budgets=(), on_rank: Callable[[np.ndarray], None] | None = None, **solve_options) -> Frontier:
    """Cost and proven bound at about `points` change budgets from 0 (or the SIMs that must move) to the
    unconstrained answer's changes, or at the `budgets` given; every point's answer a prefix of one order.

    extra_budgets are added to the `points` budgets (each raised to the SIMs that must move). on_rank, when
    given, gets the order of moves (Frontier.rank) as soon as it is known, before the points and bounds."""
    started = perf_counter()
    if problem.n_sims == 0:
        ref = _reference(problem, reference, **solve_options)
        pt = FrontierPoint(0, float(ref.total_cost), float(ref.lower_bound or 0.0), 0)
        empty = np.empty(0, dtype=np.int64)
        return Frontier((pt,), empty, empty.astype(np.int32), problem.current_plan, ref, 0, perf_counter() - started)
    ref = _reference(problem, reference, **solve_options)
    setup = _setup(problem, ref.skipped_groups)
    cur = problem.current_plan.astype(np.int64)
    target = np.asarray(ref.assignment, dtype=np.int64).copy()
    target[setup.fixed] = cur[setup.fixed]
    F = int(setup.forced.sum())
    D = F + int((setup.free & (target != cur)).sum())
    if budgets is None:
        ks = budgets_for(F, D, points)
        if len(extra_budgets):
            ks = np.unique(np.concatenate([ks, np.maximum(np.asarray(extra_budgets, dtype=np.int64), F)]))
    else:
        ks = np.unique(np.asarray(budgets, dtype=np.int64))
        if ks.size and ks[0] < F:
            raise ProblemError(f"max_changes {int(ks[0])} is below the {F} SIMs that must change plan "
                               "(no current plan, or one their group no longer allows)")
    rank, cuts, costs = _path(problem, setup, target, np.minimum(ks, D))
    if on_rank is not None:
        on_rank(rank)
    order_target = np.where(rank >= 0, target, cur)

    # Per budget: the cheapest prefix of at most K moves (path costs), then its exact price.
    chosen = []
    for K in ks:
        ok = cuts <= K
        best = int(cuts[ok][np.argmin(costs[ok])])
        chosen.append(best)
    fr_tmp = Frontier((), rank, order_target.astype(np.int32), cur.astype(np.int32), ref, F, 0.0)
    priced = {k: price(problem, fr_tmp.assignment(k)).total for k in set(chosen)}
    # Cost never rises with the budget: a smaller budget's answer is an answer of a larger one.
    for j in range(1, len(chosen)):
        if priced[chosen[j - 1]] < priced[chosen[j]]:
            chosen[j] = chosen[j - 1]

    # Bounds: per budget, multipliers found by ascent on a sample of the SIMs (from the better of the
    # previous budget's and those its answer's pools suggest), each then evaluated on every SIM: any
    # multipliers give a valid bound for every budget.
    n = problem.n_sims
    lines = _Lines(problem, setup)
    if n > SAMPLE:
        sample = np.sort(np.random.default_rng(SEED).choice(n, SAMPLE, replace=False))
        small = _Lines(problem, setup, sample)
    else:
        sample, small = None, lines
    scale = 1.0 if sample is None else SAMPLE / n
    bound = np.full(ks.size, -np.inf)
    star = None
    if ref.multipliers is not None and ref.multipliers.shape[0] == setup.S:
        star = _multipliers(setup, ref.multipliers)
        bound = np.maximum(bound, lines.curve(star, ks))
    prev = star
    for j, K in enumerate(ks):
        Ks = int(round(K * scale)) if sample is not None else int(K)
        Ks = max(Ks, int(small.forced.sum()))
        starts = [_multipliers(setup, _bang_bang(problem, setup, fr_tmp.assignment(chosen[j])))]
        if prev is not None:
            starts.append(prev)
        start = max(starts, key=lambda L: small.curve(L, [Ks])[0])
        prev = small.ascend(start, Ks, ASCENT_STEPS)
        bound = np.maximum(bound, lines.curve(prev, ks))
    if ref.lower_bound is not None:
        bound = np.maximum(bound, float(ref.lower_bound))
    # A larger budget's bound bounds every smaller budget's problem (fewer answers, no cheaper one).
    bound = np.maximum.accumulate(bound[::-1])[::-1]
    bound = np.where(bound > 0, bound - BOUND_MARGIN * np.maximum(1.0, bound), 0.0)
    pts = tuple(FrontierPoint(int(K), float(priced[k]), float(b), int(k))
                for K, k, b in zip(ks, chosen, bound, strict=True))
    return Frontier(pts, rank, order_target.astype(np.int32), cur.astype(np.int32), ref, F, perf_counter() - started)


def solve_budgeted(problem: Problem, max_changes: int, *, reference: Solution | None = None, **solve_options) -> Solution:
    """The cheapest answer found with at most `max_changes` SIMs changing plan, with a proven lower bound
    for that budget's problem (no bound per group: the budget is shared by every group)."""
    started = perf_counter()
    if int(max_changes) < 0:
        raise ProblemError(f"max_changes must be >= 0, got {max_changes}")
    fr = frontier(problem, budgets=[int(max_changes)], reference=reference, **solve_options)
    # The run's time: the unconstrained solve the moves come from, and the budget's.
    earlier = reference.seconds if reference is not None else 0.0
    pt = fr.points[0]
    a = fr.assignment(pt.changes)
    pr = price(problem, a)
    ref = fr.reference
    return Solution(
        assignment=a,
        total_cost=pr.total,
        lower_bound=pt.lower_bound,
        group_cost=pr.per_group,
        group_bound=None,
        method=ref.method,
        seconds=earlier + perf_counter() - started,
        skipped_groups=ref.skipped_groups,
        winning_strategy=tuple(f"{s} (within {int(max_changes)} changes)" if not s.startswith(("skipped", "no SIMs")) else s
                               for s in ref.winning_strategy),
        winning_sequence=ref.winning_sequence,
        notes=ref.notes,
        changes=count_changes(problem, a),
        multipliers=None,
        max_changes=int(max_changes),
    )


__all__ = ["Frontier", "FrontierPoint", "budgets_for", "frontier", "solve_budgeted"]
