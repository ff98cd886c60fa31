"""The certified solver: per group, a Lagrangian lower bound and an assignment priced within a small, stated gap of it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .legacy import legacy_best_for_group
from .model import Problem, Solution
from .pergroup import Group, GroupAnswer, solve_per_group
from .pricing import PlanTerms, blocks, group_cost
from .winner import Candidate, choose_winner

# Groups whose every assignment can be listed (plans ** SIMs up to this) are solved by enumeration: exact.
EXACT_LIMIT = 100_000
# The dual is solved on at most this many usage bins; the bound itself is always evaluated on every SIM.
MAX_BINS = 8_000
# Small groups also get the pair-move search when SIM pairs x target pairs is at most this.
PAIR_SEARCH_LIMIT = 60_000
# Plans per SIM the pair search may send it to (besides where it is): its cheapest Lagrangian lines.
PAIR_TARGETS = 4
# Perturb-and-descend restarts of the pair search on small groups.
ILS_ROUNDS = 30
# At most this many extra bin edges where the best individual plan's cost steps.
MAX_STEP_EDGES = 20_000
# Softmin terms further than this many temperatures from the minimum are treated as exactly zero.
SOFT_CUT = 40.0
# Relative margin taken off every bound so float summation order can never push it above a true cost.
BOUND_MARGIN = 1e-9
_GOLDEN = 0.6180339887498949


@dataclass
class GroupResult:
    plan: np.ndarray  # catalogue plan index per SIM, SIMs in ascending usage order
    bound: float
    how: str


# --------------------------------------------------------------------------- per-SIM costs of individual plans


def _individual_costs(u: np.ndarray, plans: np.ndarray, t: PlanTerms) -> np.ndarray:
    """(n, k) exact cost of each SIM alone on each plan whose cost does not depend on other SIMs."""
    if plans.size == 0:
        return np.empty((u.shape[0], 0))
    K, A, r, b = t.K[plans], t.A[plans], t.r[plans], t.b[plans]
    return K[None, :] + r[None, :] * blocks(u[:, None] - A[None, :], b[None, :])


# --------------------------------------------------------------------------- the Lagrangian dual


def _bins(u: np.ndarray, m: np.ndarray | None, max_bins: int):
    """Compress sorted usage into bins: the dual value is linear in usage inside a bin without a breakpoint,
    so a bin of SIMs counts exactly like one SIM at the bin mean everywhere except at the few breakpoints."""
    n = u.shape[0]
    if n <= max_bins:
        return u.copy(), np.ones(n), (None if m is None else m.copy())
    edges = np.linspace(0, n, max_bins - 1000).astype(np.int64)
    pos = u[u > 0]
    if pos.size and u[-1] > pos[0]:
        # The heavy tail is sparse: log-spaced edges keep a few huge SIMs from sharing a bin with small ones.
        edges = np.concatenate([edges, np.searchsorted(u, np.geomspace(pos[0], u[-1], 1000))])
    if m is not None:
        # The best individual plan's cost is a step function of usage; cutting bins where it steps keeps it
        # constant inside each bin, so the bins see exactly where an individual plan beats the pools.
        steps = np.flatnonzero(m[1:] != m[:-1]) + 1
        if steps.size > MAX_STEP_EDGES:
            steps = steps[np.linspace(0, steps.size - 1, MAX_STEP_EDGES).astype(np.int64)]
        edges = np.concatenate([edges, steps])
    edges = np.unique(np.concatenate([edges, [0, n]]))
    cnt = np.diff(edges)
    keep = cnt > 0
    lo, hi, cnt = edges[:-1][keep], edges[1:][keep], cnt[keep].astype(np.float64)
    S = np.concatenate([[0.0], np.cumsum(u)])
    ub = (S[hi] - S[lo]) / cnt
    mb = None
    if m is not None:
        Sm = np.concatenate([[0.0], np.cumsum(m)])
        mb = (Sm[hi] - Sm[lo]) / cnt
    return ub, cnt, mb


def _smoothed(lam, ub, nb, mb, K, A, tau, want_derivatives=True):
    """Entropy-smoothed dual: sum_b n_b * softmin_tau over lines K + lam*(u - A) (and the individual-plan cost)."""
    Q = K.shape[0]
    V = ub[:, None] * lam[None, :]
    V += (K - lam * A)[None, :]
    if mb is not None:
        V = np.concatenate([V, mb[:, None]], axis=1)
    arg = V.argmin(axis=1)
    vmin = V[np.arange(V.shape[0]), arg]
    V -= vmin[:, None]
    V *= -1.0 / tau
    soft = (V > -SOFT_CUT).sum(axis=1) > 1
    Vs = V[soft]
    np.maximum(Vs, -SOFT_CUT, out=Vs)
    np.exp(Vs, out=Vs)
    zs = Vs.sum(axis=1)
    value = float(np.dot(nb, vmin)) - tau * float(np.dot(nb[soft], np.log(zs)))
    if not want_derivatives:
        return value
    hard = ~soft
    ah = arg[hard]
    on_line = ah < Q
    ah = ah[on_line]
    uh = ub[hard][on_line]
    grad = np.zeros(Q)
    grad += np.bincount(ah, weights=nb[hard][on_line] * (uh - A[ah]), minlength=Q)
    W = Vs[:, :Q] / zs[:, None]
    D = ub[soft][:, None] - A[None, :]
    WD = W * D
    nWD = nb[soft][:, None] * WD
    grad += nWD.sum(axis=0)
    # Hard bins have one-hot weights and so no curvature: only the soft ones enter the Hessian.
    hess = (nWD.T @ WD - np.diag((nWD * D).sum(axis=0))) / tau
    return value, grad, hess


def _maximise_smoothed(ub, nb, mb, K, A, s, lam, tau, max_iter=40):
    """Projected Newton ascent on the smoothed dual over the box 0 <= lam <= s."""
    Q = K.shape[0]
    for _ in range(max_iter):
        value, grad, hess = _smoothed(lam, ub, nb, mb, K, A, tau)
        fixed = ((lam <= 0) & (grad < 0)) | ((lam >= s) & (grad > 0))
        free = ~fixed
        if not free.any():
            break
        step = np.zeros(Q)
        Hf = -hess[np.ix_(free, free)]
        ridge = 1e-12 * max(float(np.trace(Hf)), 1e-300) + 1e-300
        try:
            step[free] = np.linalg.solve(Hf + ridge * np.eye(int(free.sum())), grad[free])
        except np.linalg.LinAlgError:
            step[free] = grad[free]
        # A multiplier with no curvature (no SIM near any of its breakpoints) can get a near-infinite
        # step; shrink the whole step (keeping its direction) until no coordinate exceeds the box width.
        if not np.all(np.isfinite(step)):
            step = np.where(free, grad, 0.0)
        widest = float(np.max(np.abs(step) / np.maximum(s, 1e-300)))
        if widest > 1.0:
            step /= widest
        if float(grad @ step) <= 1e-10 * abs(value) + 1e-14:
            break
        t = 1.0
        while t > 1e-8:
            cand = np.clip(lam + t * step, 0.0, s)
            if _smoothed(cand, ub, nb, mb, K, A, tau, want_derivatives=False) >= value:
                break
            t *= 0.5
        else:
            break
        lam = cand
    return lam


def _solve_dual(u, m, K, A, s, max_bins=MAX_BINS):
    """Multipliers for the pooled plans: a continuation on the smoothing temperature down to ~1e-6 of a plan price."""
    ub, nb, mb = _bins(u, m, max_bins)
    scale = max(float(K.max()), float((s * A).max()), 1e-12)
    lam = 0.5 * s
    tau = 0.02 * scale
    while True:
        lam = _maximise_smoothed(ub, nb, mb, K, A, s, lam, tau)
        if tau < 3e-6 * scale:
            return lam, tau
        tau *= 0.2


def _envelope(alpha: np.ndarray, lam: np.ndarray):
    """Lower envelope over usage >= 0 of the lines alpha + lam*u: line indices left to right and breakpoints."""
    order = np.lexsort((alpha, -lam))
    hull: list[int] = []
    xs: list[float] = []
    for i in order:
        if hull and lam[hull[-1]] == lam[i]:
            continue  # parallel and not lower: never on the envelope
        while hull:
            j = hull[-1]
            x = (alpha[i] - alpha[j]) / (lam[j] - lam[i])
            if x <= 0 or (xs and x <= xs[-1]):
                hull.pop()
                if xs:
                    xs.pop()
                continue
            break
        if hull:
            j = hull[-1]
            xs.append((alpha[i] - alpha[j]) / (lam[j] - lam[i]))
        hull.append(int(i))
    return np.array(hull, dtype=np.int64), np.array(xs, dtype=np.float64)


def _pooled_envelope(u, lam, K, A):
    """Per SIM: the cheapest pooled line value and which line it is."""
    alpha = K - lam * A
    hull, xs = _envelope(alpha, lam)
    line = hull[np.searchsorted(xs, u, side="right")]
    return alpha[line] + lam[line] * u, line


def lagrangian_bound(u, lam, K, A, s, m=None) -> float:
    """max(0, sum_i min(m_i, min_p K_p + lam_p (u_i - A_p))) at lam (clipped to 0 <= lam <= s) or at 0.

    Pool p's charge n*K + r*blocks(U - n*A) >= n*K + (r/b)*max(0, U - n*A) >= sum over its SIMs of
    K + lam*(u - A) for any 0 <= lam <= r/b; individual plans enter with their exact cost m_i.
    """
    best = 0.0  # no price is negative
    for multipliers in (np.clip(lam, 0.0, s), np.zeros_like(s)):
        E, _ = _pooled_envelope(u, multipliers, K, A)
        if m is not None:
            E = np.minimum(E, m)
        best = max(best, float(E.sum()))
    return best - BOUND_MARGIN * max(1.0, best) if best > 0 else 0.0


# --------------------------------------------------------------------------- primal: rounding, then local search


def _round_smoothed(u, lam, tau, K, A, m, marg_present):
    """Choice per SIM (0..Q-1 a pooled plan, Q the best individual plan) from the smoothed optimum.

    Where one line is clearly cheapest the SIM takes it.  Where several are within a few temperatures
    (at breakpoints, and across whole usage ranges where two pools share one line) the smoothed optimum
    splits SIMs between plans in proportions that balance the pools; a low-discrepancy sequence turns
    those proportions into whole SIMs while keeping counts and usage close to them in every usage range.
    """
    Q = K.shape[0]
    n = u.shape[0]
    E, line = _pooled_envelope(u, lam, K, A)
    choice = line.copy()
    if marg_present:
        choice[m < E] = Q
    alpha = K - lam * A
    chunk = 200_000
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        uu = u[start:stop]
        V = uu[:, None] * lam[None, :]
        V += alpha[None, :]
        if marg_present:
            V = np.concatenate([V, m[start:stop, None]], axis=1)
        vmin = V.min(axis=1)
        V -= vmin[:, None]
        V *= -1.0 / tau
        soft = np.flatnonzero((V > -SOFT_CUT).sum(axis=1) > 1)
        if soft.size == 0:
            continue
        W = np.exp(np.maximum(V[soft], -SOFT_CUT))
        cw = np.cumsum(W, axis=1)
        cw /= cw[:, -1:]
        xi = np.modf((start + soft + 1) * _GOLDEN)[0]
        pick = (cw < xi[:, None]).sum(axis=1)
        choice[start + soft] = np.minimum(pick, cw.shape[1] - 1)
    return choice


class _Pools:
    """Exact-cost local search over one group's pools (and the individual plans as one more 'pool').

    Moves: one SIM to another pool, or two SIMs swapped between pools, each priced exactly (blocks
    included).  Candidates are a usage-spread sample of each pool.  The first phase only takes moves whose
    Lagrangian reduced cost is small next to their true gain: otherwise the greedy fills a pool's spare
    allowance with one big SIM, when the dual says many small SIMs moved in would save more.
    """

    SAMPLE = 512

    def __init__(self, u, choice, K, A, r, b, m, has_individual, lam):
        self.u = u
        self.K, self.A, self.r, self.b = K, A, r, b
        self.m = m
        self.alpha, self.lam = K - lam * A, lam
        self.Q = K.shape[0]
        self.k = self.Q + (1 if has_individual else 0)
        self.members = [np.flatnonzero(choice == q) for q in range(self.k)]
        self.n = np.array([len(x) for x in self.members[: self.Q]], dtype=np.float64)
        self.U = np.array([u[x].sum() for x in self.members[: self.Q]], dtype=np.float64)
        self.cache: dict = {}
        self.restricted = True

    def _f(self, q, n, x):
        return n * self.K[q] + self.r[q] * blocks(x, self.b[q])

    def _x(self, q):
        return self.U[q] - self.n[q] * self.A[q]

    def _line(self, q, cand):
        return self.alpha[q] + self.lam[q] * self.u[cand] if q < self.Q else self.m[cand]

    def _sample(self, q):
        mem = self.members[q]
        if mem.size <= self.SAMPLE:
            return mem
        return mem[np.unique(np.linspace(0, mem.size - 1, self.SAMPLE).round().astype(np.int64))]

    def _pick(self, delta, reduced):
        if self.restricted:
            delta = np.where(delta + 2.0 * reduced <= 0, delta, np.inf)
        i = int(np.argmin(delta))
        return i, float(delta[i])

    def _best_move(self, p, q):
        cand = self._sample(p)
        if cand.size == 0:
            return (np.inf, None)
        uc = self.u[cand]
        if p < self.Q:
            xp = self._x(p)
            dp = self._f(p, self.n[p] - 1, xp - (uc - self.A[p])) - self._f(p, self.n[p], xp)
        else:
            dp = -self.m[cand]
        if q < self.Q:
            xq = self._x(q)
            dq = self._f(q, self.n[q] + 1, xq + (uc - self.A[q])) - self._f(q, self.n[q], xq)
        else:
            dq = self.m[cand]
        i, d = self._pick(dp + dq, self._line(q, cand) - self._line(p, cand))
        return (d, ("move", p, q, int(cand[i])))

    def _best_swap(self, p, q):
        if self.members[p].size == 0 or self.members[q].size == 0:
            return (np.inf, None)
        xp, xq = self._x(p), self._x(q)
        ci = self._sample(q)
        ui = self.u[ci]
        mem_p = self.members[p]
        up = self.u[mem_p]
        best = (np.inf, None)
        # i leaves q for p, j leaves p for q: d = u_i - u_j moves from q's excess to p's.
        for d in (xq, -xp, 0.5 * (xq - xp)):
            pos = np.searchsorted(up, ui - d)
            for off in (-1, 0):
                jj = np.clip(pos + off, 0, up.size - 1)
                dd = ui - up[jj]
                delta = (
                    self._f(p, self.n[p], xp + dd)
                    - self._f(p, self.n[p], xp)
                    + self._f(q, self.n[q], xq - dd)
                    - self._f(q, self.n[q], xq)
                )
                j_sims = mem_p[jj]
                reduced = (self._line(p, ci) - self._line(q, ci)) + (self._line(q, j_sims) - self._line(p, j_sims))
                k, dk = self._pick(delta, reduced)
                if dk < best[0]:
                    best = (dk, ("swap", p, q, int(ci[k]), int(j_sims[k])))
        return best

    def _evaluate(self, key):
        kind, p, q = key
        return self._best_move(p, q) if kind == "move" else self._best_swap(p, q)

    def _take(self, q, i):
        mem = self.members[q]
        self.members[q] = np.delete(mem, np.searchsorted(mem, i))
        if q < self.Q:
            self.n[q] -= 1
            self.U[q] -= self.u[i]

    def _put(self, q, i):
        mem = self.members[q]
        self.members[q] = np.insert(mem, np.searchsorted(mem, i), i)
        if q < self.Q:
            self.n[q] += 1
            self.U[q] += self.u[i]

    def improve(self, max_moves: int, tol: float) -> int:
        keys = [("move", p, q) for p in range(self.k) for q in range(self.k) if p != q]
        keys += [("swap", p, q) for p in range(self.Q) for q in range(self.Q) if p < q]
        moves = 0
        if not keys:
            return moves
        for restricted in (True, False):
            self.restricted = restricted
            for key in keys:
                self.cache[key] = self._evaluate(key)
            while moves < max_moves:
                key = min(keys, key=lambda k: self.cache[k][0])
                delta, move = self.cache[key]
                if move is None or delta >= -tol:
                    break
                if move[0] == "move":
                    _, p, q, i = move
                    self._take(p, i)
                    self._put(q, i)
                else:
                    _, p, q, i, j = move
                    self._take(q, i)
                    self._take(p, j)
                    self._put(p, i)
                    self._put(q, j)
                moves += 1
                for k2 in keys:
                    if k2[1] in (p, q) or k2[2] in (p, q):
                        self.cache[k2] = self._evaluate(k2)
        return moves

    def choice(self) -> np.ndarray:
        out = np.empty(self.u.shape[0], dtype=np.int64)
        for q, mem in enumerate(self.members):
            out[mem] = q
        return out


def _pair_targets(u, K, A, m, lam, width=PAIR_TARGETS) -> np.ndarray:
    """Per SIM, the `width` plans with the cheapest Lagrangian line at its usage (Q = its individual plan)."""
    V = (K - lam * A)[None, :] + lam[None, :] * u[:, None]
    if m is not None:
        V = np.concatenate([V, m[:, None]], axis=1)
    return np.argsort(V, axis=1, kind="stable")[:, : min(width, V.shape[1])]


def _pair_moves(u, choice, K, A, r, b, m, targets, max_rounds=50) -> np.ndarray:
    """Best-improvement over every pair of SIMs, each sent to its current plan or one of its target plans.

    Reaches what single moves cannot: e.g. opening a pool with a heavy SIM plus an idle one that brings
    its allowance, where each move alone costs more.
    """
    Q = K.shape[0]
    n = u.shape[0]
    if n < 2:
        return choice
    first_sim, second_sim = np.triu_indices(n, 1)
    T = targets.shape[1] + 1
    sims = (first_sim[:, None, None], second_sim[:, None, None])
    usage = (u[first_sim][:, None, None], u[second_sim][:, None, None])
    indiv = m if m is not None else np.zeros(n)
    choice = choice.copy()
    for _ in range(max_rounds):
        cnt = np.bincount(choice, minlength=Q + 1)[:Q].astype(np.float64)
        use = np.bincount(choice, weights=u, minlength=Q + 1)[:Q]
        opts = np.concatenate([choice[:, None], targets], axis=1)
        ci, cj = choice[first_sim][:, None, None], choice[second_sim][:, None, None]
        ta, tb = opts[first_sim][:, :, None], opts[second_sim][:, None, :]
        slots = (ci, cj, ta, tb)
        signs = (-1.0, -1.0, 1.0, 1.0)
        who = (0, 1, 0, 1)
        delta = np.zeros((first_sim.size, T, T))
        eq = {(s1, s2): slots[s1] == slots[s2] for s1 in range(4) for s2 in range(s1)}
        for s_i, q in enumerate(slots):
            dn = np.full(delta.shape, signs[s_i])
            du = np.broadcast_to(signs[s_i] * usage[who[s_i]], delta.shape).copy()
            first = np.ones(delta.shape, dtype=bool)
            for s2 in range(4):
                if s2 == s_i:
                    continue
                same = eq[max(s_i, s2), min(s_i, s2)]
                dn += signs[s2] * same
                du += signs[s2] * same * usage[who[s2]]
                if s2 < s_i:
                    first &= ~same
            qc = np.minimum(q, Q - 1)
            n0, u0 = cnt[qc], use[qc]
            Kq, Aq, rq, bq = K[qc], A[qc], r[qc], b[qc]
            change = (n0 + dn) * Kq + rq * blocks(u0 + du - (n0 + dn) * Aq, bq) - (n0 * Kq + rq * blocks(u0 - n0 * Aq, bq))
            delta += np.where(first & (q < Q), change, 0.0)
            delta += np.where(q == Q, signs[s_i] * indiv[sims[who[s_i]]], 0.0)
        best = int(np.argmin(delta))
        if delta.flat[best] >= -1e-9:
            break
        row, a, c = np.unravel_index(best, delta.shape)
        choice[first_sim[row]], choice[second_sim[row]] = opts[first_sim[row], a], opts[second_sim[row], c]
    return choice


def _choice_cost(u, choice, K, A, r, b, m) -> float:
    Q = K.shape[0]
    cnt = np.bincount(choice, minlength=Q + 1)[:Q].astype(np.float64)
    use = np.bincount(choice, weights=u, minlength=Q + 1)[:Q]
    cost = float((cnt * K + r * blocks(use - cnt * A, b)).sum())
    if m is not None:
        cost += float(m[choice == Q].sum())
    return cost


def _iterated_pair_search(u, choice, K, A, r, b, m, lam, bound, rounds=ILS_ROUNDS) -> np.ndarray:
    """Pair-move descent restarted from perturbations of the best answer so far (small groups only).

    Small groups are packing problems where the dual says little about which pools to open; kicking a
    few SIMs to other plans and descending again finds packings a single descent misses.  The random
    generator has a fixed seed, so the answer is the same on every run.
    """
    targets = _pair_targets(u, K, A, m, lam)
    best = _pair_moves(u, choice, K, A, r, b, m, targets)
    best_cost = _choice_cost(u, best, K, A, r, b, m)
    rng = np.random.default_rng(20240601)
    n = u.shape[0]
    for _ in range(rounds):
        if best_cost <= bound + 1e-9 * max(1.0, bound):
            break  # provably optimal already
        trial = best.copy()
        kick = rng.choice(n, size=min(n, int(rng.integers(2, 5))), replace=False)
        trial[kick] = targets[kick, rng.integers(0, targets.shape[1], size=kick.size)]
        trial = _pair_moves(u, trial, K, A, r, b, m, targets)
        c = _choice_cost(u, trial, K, A, r, b, m)
        if c < best_cost - 1e-9:
            best, best_cost = trial, c
    return best


# --------------------------------------------------------------------------- exact enumeration for tiny groups


def _enumerate(u: np.ndarray, plans: np.ndarray, t: PlanTerms) -> tuple[np.ndarray, float]:
    """Cheapest assignment of a few SIMs by listing every one (plans ** SIMs of them)."""
    n, k = u.shape[0], plans.shape[0]
    best_cost, best = np.inf, None
    indiv = _individual_costs(u, plans, t)
    linear_pool = t.pooled[plans] & (t.s[plans] > 0)
    total = k**n
    chunk = 20_000
    for start in range(0, total, chunk):
        codes = np.arange(start, min(total, start + chunk), dtype=np.int64)
        digits = (codes[:, None] // (k ** np.arange(n - 1, -1, -1, dtype=np.int64))[None, :]) % k
        cost = np.zeros(codes.shape[0])
        for j in range(k):
            on = digits == j
            if linear_pool[j]:
                cnt = on.sum(axis=1)
                U = (on * u[None, :]).sum(axis=1)
                p = plans[j]
                cost += np.where(cnt > 0, cnt * t.K[p] + t.r[p] * blocks(U - cnt * t.A[p], t.b[p]), 0.0)
            else:
                cost += (on * indiv[None, :, j]).sum(axis=1)
        i = int(np.argmin(cost))
        if cost[i] < best_cost:
            best_cost, best = float(cost[i]), plans[digits[i]]
    return best, best_cost


# --------------------------------------------------------------------------- one group


def solve_group(
    u: np.ndarray, plans: np.ndarray, t: PlanTerms, *, exact_limit: int = EXACT_LIMIT, progress=None
) -> GroupResult:
    """Assignment (catalogue index per SIM, `u` sorted ascending) and proven lower bound for one group.

    progress, if given, is called with the fraction of this group's work done (phases, not SIMs).
    """
    step = progress if progress is not None else (lambda fraction: None)
    n = u.shape[0]
    if n == 0:
        return GroupResult(np.empty(0, dtype=np.int64), 0.0, "no SIMs")
    if plans.shape[0] ** n <= exact_limit:
        plan, cost = _enumerate(u, plans, t)
        # Enumeration proves optimality: the bound is the optimum itself.
        return GroupResult(plan, cost - BOUND_MARGIN * max(1.0, abs(cost)), "exact enumeration")

    linear = plans[t.pooled[plans] & (t.s[plans] > 0)]
    other = plans[~(t.pooled[plans] & (t.s[plans] > 0))]
    m = marg = None
    if other.size:
        indiv = _individual_costs(u, other, t)
        j = indiv.argmin(axis=1)
        m = indiv[np.arange(n), j]
        marg = other[j]
    if linear.size == 0:
        # No pool whose size matters: every SIM independently takes its cheapest plan, which is optimal.
        value = float(m.sum())
        return GroupResult(marg, value - BOUND_MARGIN * max(1.0, abs(value)), "exact (no pooled plan)")

    K, A, r, b, s = t.K[linear], t.A[linear], t.r[linear], t.b[linear], t.s[linear]
    lam, tau = _solve_dual(u, m, K, A, s)
    step(0.3)
    bound = lagrangian_bound(u, lam, K, A, s, m)
    choice = _round_smoothed(u, lam, tau, K, A, m, m is not None)
    step(0.5)
    pools = _Pools(u, choice, K, A, r, b, m, m is not None, lam)
    pools.improve(max_moves=max(50, 25 * pools.k), tol=1e-9)
    choice = pools.choice()
    step(0.8)
    if n * (n - 1) // 2 * (min(PAIR_TARGETS, pools.k) + 1) ** 2 <= PAIR_SEARCH_LIMIT:
        choice = _iterated_pair_search(u, choice, K, A, r, b, m, lam, bound)
    plan = np.empty(n, dtype=np.int64)
    pooled_sims = choice < linear.size
    plan[pooled_sims] = linear[choice[pooled_sims]]
    if marg is not None:
        plan[~pooled_sims] = marg[~pooled_sims]
    return GroupResult(plan, bound, "certified")


# --------------------------------------------------------------------------- whole problem


def solve_certified(
    problem: Problem,
    *,
    progress=None,
    max_plans: int | None = None,
    compare_legacy: bool = True,
    max_sequences: int = 1000,
    exact_limit: int = EXACT_LIMIT,
) -> Solution:
    """Certified assignment: per group the winner (choose_winner) of this solver, the legacy strategies
    and the current plans.

    Groups with no allowed plan, or more than `max_plans` when a limit is set, are skipped: their SIMs
    keep their current plan (-1 where unknown) and that fixed cost counts in both total and bound.
    """
    share = 0.85 if compare_legacy else 1.0  # the legacy comparison takes roughly the rest

    def solve_one(group: Group) -> GroupAnswer:
        t, members, plans = group.terms, group.members, group.plans
        u = problem.usage_mb[members]
        idx = members[np.argsort(u, kind="stable")]  # the group's SIMs, ascending usage
        perm = np.argsort(idx, kind="stable")  # back to input order: pricing in it matches price() bit for bit
        res = solve_group(problem.usage_mb[idx], plans, t, exact_limit=exact_limit,
                          progress=lambda fraction: group.progress(share * fraction))
        candidates = [Candidate(res.plan[perm], "certified", res.how)]
        group.progress(share)
        if compare_legacy:
            lg = legacy_best_for_group(problem, group.index, max_sequences=max_sequences, terms=t, by_usage=idx)
            if lg is not None:
                candidates.append(Candidate(lg.plan_by_usage[perm], "legacy", f"legacy: {lg.description}", lg.sequence))
        win = choose_winner(
            candidates,
            current=Candidate(problem.current_plan[members], "current", "kept current plans (cheapest)"),
            allowed_plans=plans,
            price=lambda plan: group_cost(t, u, plan),
        )
        return GroupAnswer(win.candidate.assignment, win.candidate.strategy, win.candidate.sequence,
                           bound=min(res.bound, win.cost))

    return solve_per_group(problem, solve_one, method="certified", max_plans=max_plans, bounded=True, progress=progress)


__all__ = ["solve_certified", "solve_group", "lagrangian_bound", "GroupResult"]
