"""The certified solver: per group, a Lagrangian lower bound and an assignment priced within a small, stated gap of it."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from .legacy import legacy_best_for_group
from .model import Problem, Solution
from .pergroup import Group, GroupAnswer, count_changes, group_skip_reason, solve_per_group
from .pricing import BLOCK_EPS, PlanTerms, blocks, group_cost, plan_terms, price, scope_cost
from .winner import Candidate, choose_winner, current_plans_compete

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
# Distinct factors binned apart in the dual; more than this many are grouped into this many classes.
MAX_FACTOR_CLASSES = 64
# Bins of the dual for a factor class however few SIMs it has (all of them when fewer).
CLASS_MIN_BINS = 128
# Added to the line of a plan a SIM may not take (pools spanning groups with different plans): never cheapest.
NOT_ALLOWED = 1e12
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
    # The bound's multiplier per catalogue plan (NaN for plans without one: not pooled, not in the group,
    # or a group solved without the dual); a change budget's bound starts from them.
    multipliers: np.ndarray | None = None


# --------------------------------------------------------------------------- per-SIM costs of individual plans


def _individual_costs(u: np.ndarray, plans: np.ndarray, t: PlanTerms, f=None) -> np.ndarray:
    """(n, k) exact cost of each SIM alone on each plan whose cost does not depend on other SIMs.

    f: the SIMs' factors (None: the billing factor)."""
    if plans.size == 0:
        return np.empty((u.shape[0], 0))
    r, b = t.r[plans], t.b[plans]
    if f is None:
        K, A = t.K[plans][None, :], t.A[plans][None, :]
    else:
        K = f[:, None] * t.monthly[plans][None, :] + t.fee[plans][None, :]
        A = f[:, None] * t.included[plans][None, :]
    return K + r[None, :] * blocks(u[:, None] - A, b[None, :])


# --------------------------------------------------------------------------- the Lagrangian dual


def _bins(u: np.ndarray, m: np.ndarray | None, max_bins: int):
    """Compress sorted usage into bins: the dual value is linear in usage inside a bin without a breakpoint,
    so a bin of SIMs counts exactly like one SIM at the bin mean everywhere except at the few breakpoints."""
    n = u.shape[0]
    if n <= max_bins:
        return u.copy(), np.ones(n), (None if m is None else m.copy())
    # Small budgets (a factor class of a few SIMs) spend half on the tail, where a few SIMs move a pool.
    n_log = max_bins // 8 if max_bins >= 2048 else max_bins // 2
    edges = np.linspace(0, n, max(2, max_bins - n_log)).astype(np.int64)
    pos = u[u > 0]
    if pos.size and u[-1] > pos[0] and n_log > 1:
        # The heavy tail is sparse: log-spaced edges keep a few huge SIMs from sharing a bin with small ones.
        edges = np.concatenate([edges, np.searchsorted(u, np.geomspace(pos[0], u[-1], n_log))])
    if m is not None:
        # The best individual plan's cost is a step function of usage; cutting bins where it steps keeps it
        # constant inside each bin, so the bins see exactly where an individual plan beats the pools.
        steps = np.flatnonzero(m[1:] != m[:-1]) + 1
        most = max(1, int(MAX_STEP_EDGES * max_bins / MAX_BINS))
        if steps.size > most:
            steps = steps[np.linspace(0, steps.size - 1, most).astype(np.int64)]
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


# The last classification made in this thread (solves may run side by side in threads).
_classes_seen = threading.local()


def _factor_classes(w: np.ndarray, ok: np.ndarray | None = None):
    """SIMs that share a factor (and, with ok, the pooled lines they may take) share every line:
    (factor per class, inverse, order by class, class starts, lines allowed per class or None).

    Remembered for the last arrays asked about (a group's classes serve the dual, the bound twice and the
    rounding)."""
    seen = getattr(_classes_seen, "last", None)
    if seen is not None and seen[0] is w and seen[1] is ok:
        return seen[2]
    values, inverse = np.unique(w, return_inverse=True)
    ok_class = None
    if ok is not None:
        code = ok.astype(np.int64) @ (np.int64(1) << np.arange(ok.shape[1], dtype=np.int64))
        keys, inverse = np.unique(inverse.astype(np.int64) * (np.int64(1) << ok.shape[1]) + code, return_inverse=True)
        values = values[keys >> ok.shape[1]]
        ok_class = ((keys & ((np.int64(1) << ok.shape[1]) - 1))[:, None] >> np.arange(ok.shape[1])) & 1
        ok_class = ok_class.astype(bool)
    order = np.argsort(inverse, kind="stable")  # by class; within a class in the SIMs' order
    starts = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=values.size))])
    result = (values, inverse, order, starts, ok_class)
    _classes_seen.last = (w, ok, result)
    return result


def _class_bins(u, m, w, max_bins, ok=None):
    """Bins per class (SIMs of one factor share every line's slope and intercept): usage, count,
    individual cost, factor and line penalty (NOT_ALLOWED where the class may not take a line) per bin.
    w None: one class, no factor column."""
    if w is None:
        ub, nb, mb = _bins(u, m, max_bins)
        return ub, nb, mb, None, None
    values, inverse, order, _, ok_class = _factor_classes(w, ok)
    if values.size > MAX_FACTOR_CLASSES and ok is None:
        # Many distinct factors: classes of nearby factors; the bins only steer the multipliers, the bound
        # is evaluated on every SIM with its own factor.
        edges = np.quantile(w, np.linspace(0, 1, MAX_FACTOR_CLASSES + 1)[1:-1])
        inverse = np.searchsorted(edges, w, side="right")
        order = np.argsort(inverse, kind="stable")  # within a class, ascending usage as u is
    counts = np.bincount(inverse)
    starts = np.concatenate([[0], np.cumsum(counts)])
    parts = []
    n = u.shape[0]
    for k in range(counts.size):
        if counts[k] == 0:
            continue
        idx = order[starts[k] : starts[k + 1]]
        budget = max(CLASS_MIN_BINS, int(max_bins * counts[k] / n))
        ub, nb, mb = _bins(u[idx], None if m is None else m[idx], budget)
        S = np.concatenate([[0.0], np.cumsum(w[idx])])
        if nb.shape[0] == idx.shape[0]:
            wb = w[idx].copy()
        else:
            # bin mean factor: the same edges _bins used, recovered from the counts
            hi = np.cumsum(nb).astype(np.int64)
            lo = hi - nb.astype(np.int64)
            wb = (S[hi] - S[lo]) / nb
        pen = None
        if ok_class is not None:
            pen = np.broadcast_to(np.where(ok_class[k], 0.0, NOT_ALLOWED), (nb.shape[0], ok_class.shape[1]))
        parts.append((ub, nb, mb, wb, pen))
    ub = np.concatenate([p[0] for p in parts])
    nb = np.concatenate([p[1] for p in parts])
    mb = None if m is None else np.concatenate([p[2] for p in parts])
    wb = np.concatenate([p[3] for p in parts])
    pb = None if ok_class is None else np.concatenate([p[4] for p in parts])
    return ub, nb, mb, wb, pb


def _smoothed(lam, ub, nb, mb, K, A, tau, want_derivatives=True, e=None, wb=None, X0=None, pb=None):
    """Entropy-smoothed dual: sum_b n_b * softmin_tau over lines K + lam*(u - A) (and the individual-plan cost).

    With factors wb per bin the lines are e + wb*(K - lam*A) + lam*u; X0 (per line) is the excess
    u - f*A of SIMs that cannot leave that line, which adds lam . X0.
    """
    Q = K.shape[0]
    V = ub[:, None] * lam[None, :]
    if wb is None:
        V += (K - lam * A)[None, :]
    else:
        V += e[None, :]
        V += wb[:, None] * (K - lam * A)[None, :]
        if pb is not None:
            V += pb
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
    if X0 is not None:
        value += float(np.dot(lam, X0))
    if not want_derivatives:
        return value
    hard = ~soft
    ah = arg[hard]
    on_line = ah < Q
    ah = ah[on_line]
    uh = ub[hard][on_line]
    grad = np.zeros(Q) if X0 is None else X0.astype(np.float64).copy()
    Ah = A[ah] if wb is None else wb[hard][on_line] * A[ah]
    grad += np.bincount(ah, weights=nb[hard][on_line] * (uh - Ah), minlength=Q)
    W = Vs[:, :Q] / zs[:, None]
    D = ub[soft][:, None] - (A[None, :] if wb is None else wb[soft][:, None] * A[None, :])
    WD = W * D
    nWD = nb[soft][:, None] * WD
    grad += nWD.sum(axis=0)
    # Hard bins have one-hot weights and so no curvature: only the soft ones enter the Hessian.
    hess = (nWD.T @ WD - np.diag((nWD * D).sum(axis=0))) / tau
    return value, grad, hess


def _maximise_smoothed(ub, nb, mb, K, A, s, lam, tau, max_iter=40, e=None, wb=None, X0=None, pb=None):
    """Projected Newton ascent on the smoothed dual over the box 0 <= lam <= s."""
    Q = K.shape[0]
    extra = {"e": e, "wb": wb, "X0": X0, "pb": pb}
    for _ in range(max_iter):
        value, grad, hess = _smoothed(lam, ub, nb, mb, K, A, tau, **extra)
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
            if _smoothed(cand, ub, nb, mb, K, A, tau, want_derivatives=False, **extra) >= value:
                break
            t *= 0.5
        else:
            break
        lam = cand
    return lam


def _solve_dual(u, m, K, A, s, max_bins=MAX_BINS, e=None, w=None, X0=None, ok=None):
    """Multipliers for the pooled plans: a continuation on the smoothing temperature down to ~1e-6 of a plan price."""
    ub, nb, mb, wb, pb = _class_bins(u, m, w, max_bins, ok)
    scale = max(float((K if e is None else K + e).max()), float((s * A).max()), 1e-12)
    lam = 0.5 * s
    tau = 0.02 * scale
    while True:
        lam = _maximise_smoothed(ub, nb, mb, K, A, s, lam, tau, e=e, wb=wb, X0=X0, pb=pb)
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


def _pooled_envelope(u, lam, K, A, e=None, w=None, ok=None):
    """Per SIM: the cheapest pooled line value and which line it is.

    Lines are K + lam*(u - A), or with per-SIM factors w: e + w*(K - lam*A) + lam*u, one envelope per
    distinct factor."""
    if w is None:
        alpha = K - lam * A
        hull, xs = _envelope(alpha, lam)
        line = hull[np.searchsorted(xs, u, side="right")]
        return alpha[line] + lam[line] * u, line
    values, inverse, order, starts, ok_class = _factor_classes(w, ok)
    E = np.empty(u.shape[0])
    line = np.empty(u.shape[0], dtype=np.int64)
    if values.size > 4 * MAX_FACTOR_CLASSES:
        chunk = 200_000
        for start in range(0, u.shape[0], chunk):
            sl = slice(start, start + chunk)
            V = u[sl, None] * lam[None, :] + e[None, :] + w[sl, None] * (K - lam * A)[None, :]
            if ok is not None:
                V += np.where(ok[sl], 0.0, NOT_ALLOWED)
            line[sl] = V.argmin(axis=1)
            E[sl] = V[np.arange(V.shape[0]), line[sl]]
        return E, line
    for k, f in enumerate(values):
        idx = order[starts[k] : starts[k + 1]]
        alpha = e + f * (K - lam * A)
        lines = np.arange(K.shape[0]) if ok_class is None else np.flatnonzero(ok_class[k])
        if lines.size == 0:
            # No pooled plan for these SIMs: their individual plan is their only choice.
            line[idx] = 0
            E[idx] = NOT_ALLOWED
            continue
        hull, xs = _envelope(alpha[lines], lam[lines])
        ln = lines[hull[np.searchsorted(xs, u[idx], side="right")]]
        line[idx] = ln
        E[idx] = alpha[ln] + lam[ln] * u[idx]
    return E, line


def lagrangian_bound(u, lam, K, A, s, m=None, *, e=None, w=None, X0=None, constant=0.0, ok=None) -> float:
    """max(0, sum_i min(m_i, min_p K_p + lam_p (u_i - A_p))) at lam (clipped to 0 <= lam <= s) or at 0.

    Pool p's charge n*K + r*blocks(U - n*A) >= n*K + (r/b)*max(0, U - n*A) >= sum over its SIMs of
    K + lam*(u - A) for any 0 <= lam <= r/b; individual plans enter with their exact cost m_i.  With
    per-SIM factors w a SIM's line is e + w*K + lam*(u - w*A) (K the monthly charge, A the allowance of a
    full cycle), as the pool's allowance is the sum of its members'.  SIMs that cannot move have only their
    plan to choose: on a pooled line they add lam . X0 (their excess per line) to `constant` (their
    charges there, and the exact cost of those on other plans).  ok (per SIM, per line): the pooled lines a
    SIM's group allows (pools spanning groups), the minimum is over those only.
    """
    best = 0.0  # no price is negative
    for multipliers in (np.clip(lam, 0.0, s), np.zeros_like(s)):
        E, _ = _pooled_envelope(u, multipliers, K, A, e, w, ok)
        if m is not None:
            E = np.minimum(E, m)
        value = float(E.sum()) + constant
        if X0 is not None:
            value += float(np.dot(multipliers, X0))
        best = max(best, value)
    return best - BOUND_MARGIN * max(1.0, best) if best > 0 else 0.0


# --------------------------------------------------------------------------- primal: rounding, then local search


def _round_smoothed(u, lam, tau, K, A, m, marg_present, e=None, w=None, ok=None):
    """Choice per SIM (0..Q-1 a pooled plan, Q the best individual plan) from the smoothed optimum.

    Where one line is clearly cheapest the SIM takes it.  Where several are within a few temperatures
    (at breakpoints, and across whole usage ranges where two pools share one line) the smoothed optimum
    splits SIMs between plans in proportions that balance the pools; a low-discrepancy sequence turns
    those proportions into whole SIMs while keeping counts and usage close to them in every usage range.
    """
    Q = K.shape[0]
    n = u.shape[0]
    E, line = _pooled_envelope(u, lam, K, A, e, w, ok)
    choice = line.copy()
    if marg_present:
        choice[m < E] = Q
    alpha = K - lam * A
    rank = np.arange(n)
    if w is not None:
        # SIMs of one factor share their breakpoints: number them within their factor, so each factor's
        # SIMs between two plans are split by an unbroken low-discrepancy run.
        _, inverse, order, starts, _ = _factor_classes(w, ok)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts[inverse[order]]
    chunk = 200_000
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        uu = u[start:stop]
        V = uu[:, None] * lam[None, :]
        if w is None:
            V += alpha[None, :]
        else:
            V += e[None, :]
            V += w[start:stop, None] * alpha[None, :]
            if ok is not None:
                V += np.where(ok[start:stop], 0.0, NOT_ALLOWED)
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
        xi = np.modf((rank[start + soft] + 1) * _GOLDEN)[0]
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

    def __init__(self, u, choice, K, A, r, b, m, has_individual, lam, e=None, w=None, fixed=None, ok=None):
        self.u = u
        self.ok = ok  # per SIM and pooled line: may the SIM take it (None: every SIM every line)
        self.K, self.A, self.r, self.b = K, A, r, b
        self.e = np.zeros_like(K) if e is None else e
        # Per-SIM factor (1 when K and A are already the SIMs' own charge and allowance).
        self.w = np.ones(u.shape[0]) if w is None else w
        self.m = m
        self.alpha, self.lam = K - lam * A, lam
        self.Q = K.shape[0]
        self.k = self.Q + (1 if has_individual else 0)
        self.members = [np.flatnonzero(choice == q) for q in range(self.k)]
        n0, U0, F0 = fixed if fixed is not None else (np.zeros(self.Q),) * 3
        self.n = np.array([len(x) for x in self.members[: self.Q]], dtype=np.float64) + n0
        self.U = np.array([u[x].sum() for x in self.members[: self.Q]], dtype=np.float64) + U0
        self.F = np.array([self.w[x].sum() for x in self.members[: self.Q]], dtype=np.float64) + F0
        # Swap partners are looked up by their excess in the pool, u - w*A_q: with one factor that is usage
        # order, the members' own order (kval: their usage); with per-SIM factors each pool keeps its members
        # sorted by it.  Either way an evaluation reads a few members, never the whole pool.
        self.keyed = w is not None
        self.kmem, self.kval = [], []
        for q in range(self.Q):
            mem = self.members[q]
            if self.keyed:
                key = u[mem] - self.w[mem] * A[q]
                order = np.argsort(key, kind="stable")
                self.kmem.append(mem[order])
                self.kval.append(key[order])
            else:
                self.kmem.append(mem)
                self.kval.append(u[mem])
        self.cache: dict = {}
        self.restricted = True

    def _f(self, q, n, F, x):
        # blocks() without its errstate guard: here b > 0 and x is finite (this runs ~100k times per group).
        nb = np.ceil(x / self.b[q] - BLOCK_EPS)
        return F * self.K[q] + n * self.e[q] + self.r[q] * np.where(x > 0, np.maximum(nb, 0.0), 0.0)

    def _x(self, q):
        return self.U[q] - self.F[q] * self.A[q]

    def _line(self, q, cand):
        if q >= self.Q:
            return self.m[cand]
        return self.e[q] + self.w[cand] * self.alpha[q] + self.lam[q] * self.u[cand]

    def _sample(self, q):
        mem = self.members[q]
        if mem.size <= self.SAMPLE:
            return mem
        # More members than samples: the rounded positions are strictly increasing, no duplicates to drop.
        return mem[np.linspace(0, mem.size - 1, self.SAMPLE).round().astype(np.int64)]

    def _pick(self, delta, reduced):
        if self.restricted:
            delta = np.where(delta + 2.0 * reduced <= 0, delta, np.inf)
        i = int(np.argmin(delta))
        return i, float(delta[i])

    def _best_move(self, p, q):
        cand = self._sample(p)
        if cand.size == 0:
            return (np.inf, None)
        uc, wc = self.u[cand], self.w[cand]
        if p < self.Q:
            xp = self._x(p)
            dp = (self._f(p, self.n[p] - 1, self.F[p] - wc, xp - (uc - wc * self.A[p]))
                  - self._f(p, self.n[p], self.F[p], xp))
        else:
            dp = -self.m[cand]
        if q < self.Q:
            xq = self._x(q)
            dq = (self._f(q, self.n[q] + 1, self.F[q] + wc, xq + (uc - wc * self.A[q]))
                  - self._f(q, self.n[q], self.F[q], xq))
            if self.ok is not None:
                dq = np.where(self.ok[cand, q], dq, np.inf)
        else:
            dq = self.m[cand]
        i, d = self._pick(dp + dq, self._line(q, cand) - self._line(p, cand))
        return (d, ("move", p, q, int(cand[i])))

    def _best_swap(self, p, q):
        if self.members[p].size == 0 or self.members[q].size == 0:
            return (np.inf, None)
        xp, xq = self._x(p), self._x(q)
        ci = self._sample(q)
        ui, wi = self.u[ci], self.w[ci]
        mem_p, sorted_by = self.kmem[p], self.kval[p]
        key_i = ui - wi * self.A[p] if self.keyed else ui
        # i leaves q for p, j leaves p for q: about d moves from q's excess to p's.  Partners for the three
        # targets d and the two neighbours of each, evaluated at once (rows in that order).
        targets = np.array([xq, -xp, 0.5 * (xq - xp)])
        pos = np.searchsorted(sorted_by, key_i[None, :] - targets[:, None])
        jj = np.clip(np.stack([pos - 1, pos], axis=1).reshape(6, -1), 0, mem_p.size - 1)
        j_sims = mem_p[jj]
        dd = ui[None, :] - self.u[j_sims]
        dw = wi[None, :] - self.w[j_sims]
        delta = (
            self._f(p, self.n[p], self.F[p] + dw, xp + dd - dw * self.A[p])
            - self._f(p, self.n[p], self.F[p], xp)
            + self._f(q, self.n[q], self.F[q] - dw, xq - dd + dw * self.A[q])
            - self._f(q, self.n[q], self.F[q], xq)
        )
        if self.ok is not None:
            delta = np.where(self.ok[ci, p][None, :] & self.ok[j_sims, q], delta, np.inf)
        reduced = (self._line(p, ci) - self._line(q, ci))[None, :] + (self._line(q, j_sims) - self._line(p, j_sims))
        k, dk = self._pick(delta.ravel(), reduced.ravel())
        if not np.isfinite(dk):
            return (np.inf, None)
        row, col = divmod(k, ci.size)
        return (dk, ("swap", p, q, int(ci[col]), int(j_sims[row, col])))

    def _evaluate(self, key):
        kind, p, q = key
        return self._best_move(p, q) if kind == "move" else self._best_swap(p, q)

    def _take(self, q, i):
        mem = self.members[q]
        at = np.searchsorted(mem, i)
        self.members[q] = np.delete(mem, at)
        if q < self.Q:
            self.n[q] -= 1
            self.U[q] -= self.u[i]
            self.F[q] -= self.w[i]
            if self.keyed:
                at = int(np.flatnonzero(self.kmem[q] == i)[0])
                self.kmem[q] = np.delete(self.kmem[q], at)
            else:
                self.kmem[q] = self.members[q]
            self.kval[q] = np.delete(self.kval[q], at)

    def _put(self, q, i):
        mem = self.members[q]
        at = np.searchsorted(mem, i)
        self.members[q] = np.insert(mem, at, i)
        if q < self.Q:
            self.n[q] += 1
            self.U[q] += self.u[i]
            self.F[q] += self.w[i]
            if self.keyed:
                key = self.u[i] - self.w[i] * self.A[q]
                at = int(np.searchsorted(self.kval[q], key))
                self.kmem[q] = np.insert(self.kmem[q], at, i)
            else:
                key = self.u[i]
                self.kmem[q] = self.members[q]
            self.kval[q] = np.insert(self.kval[q], at, key)

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


def _pair_targets(u, K, A, m, lam, width=PAIR_TARGETS, e=None, w=None, ok=None) -> np.ndarray:
    """Per SIM, the `width` plans with the cheapest Lagrangian line at its usage (Q = its individual plan)."""
    alpha = (K - lam * A)[None, :]
    V = (alpha if w is None else e[None, :] + w[:, None] * alpha) + lam[None, :] * u[:, None]
    if ok is not None:
        V = V + np.where(ok, 0.0, NOT_ALLOWED)
    if m is not None:
        V = np.concatenate([V, m[:, None]], axis=1)
    return np.argsort(V, axis=1, kind="stable")[:, : min(width, V.shape[1])]


def _pool_state(u, w, choice, Q, fixed):
    cnt = np.bincount(choice, minlength=Q + 1)[:Q].astype(np.float64)
    use = np.bincount(choice, weights=u, minlength=Q + 1)[:Q]
    fac = np.bincount(choice, weights=w, minlength=Q + 1)[:Q]
    if fixed is not None:
        cnt, use, fac = cnt + fixed[0], use + fixed[1], fac + fixed[2]
    return cnt, use, fac


def _pair_moves(u, choice, K, A, r, b, m, targets, max_rounds=50, e=None, w=None, fixed=None, ok=None) -> np.ndarray:
    """Best-improvement over every pair of SIMs, each sent to its current plan or one of its target plans.

    Reaches what single moves cannot: e.g. opening a pool with a heavy SIM plus an idle one that brings
    its allowance, where each move alone costs more.
    """
    Q = K.shape[0]
    n = u.shape[0]
    if n < 2:
        return choice
    e = np.zeros(Q) if e is None else e
    w = np.ones(n) if w is None else w
    first_sim, second_sim = np.triu_indices(n, 1)
    T = targets.shape[1] + 1
    sims = (first_sim[:, None, None], second_sim[:, None, None])
    usage = (u[first_sim][:, None, None], u[second_sim][:, None, None])
    factor = (w[first_sim][:, None, None], w[second_sim][:, None, None])
    indiv = m if m is not None else np.zeros(n)
    # May SIM i take option q (Q: its individual plan)?
    ok_full = None
    if ok is not None:
        ok_full = np.concatenate([ok, (indiv < NOT_ALLOWED)[:, None] if m is not None else np.zeros((n, 1), bool)], axis=1)
    choice = choice.copy()
    for _ in range(max_rounds):
        cnt, use, fac = _pool_state(u, w, choice, Q, fixed)
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
            dF = np.broadcast_to(signs[s_i] * factor[who[s_i]], delta.shape).copy()
            first = np.ones(delta.shape, dtype=bool)
            for s2 in range(4):
                if s2 == s_i:
                    continue
                same = eq[max(s_i, s2), min(s_i, s2)]
                dn += signs[s2] * same
                du += signs[s2] * same * usage[who[s2]]
                dF += signs[s2] * same * factor[who[s2]]
                if s2 < s_i:
                    first &= ~same
            qc = np.minimum(q, Q - 1)
            n0, u0, F0 = cnt[qc], use[qc], fac[qc]
            Kq, eq_, Aq, rq, bq = K[qc], e[qc], A[qc], r[qc], b[qc]
            change = ((F0 + dF) * Kq + (n0 + dn) * eq_ + rq * blocks(u0 + du - (F0 + dF) * Aq, bq)
                      - (F0 * Kq + n0 * eq_ + rq * blocks(u0 - F0 * Aq, bq)))
            delta += np.where(first & (q < Q), change, 0.0)
            delta += np.where(q == Q, signs[s_i] * indiv[sims[who[s_i]]], 0.0)
        if ok_full is not None:
            delta = np.where(ok_full[first_sim[:, None, None], ta] & ok_full[second_sim[:, None, None], tb], delta, np.inf)
        best = int(np.argmin(delta))
        if delta.flat[best] >= -1e-9:
            break
        row, a, c = np.unravel_index(best, delta.shape)
        choice[first_sim[row]], choice[second_sim[row]] = opts[first_sim[row], a], opts[second_sim[row], c]
    return choice


def _choice_cost(u, choice, K, A, r, b, m, e=None, w=None, fixed=None) -> float:
    Q = K.shape[0]
    e = np.zeros(Q) if e is None else e
    w = np.ones(u.shape[0]) if w is None else w
    cnt, use, fac = _pool_state(u, w, choice, Q, fixed)
    cost = float((fac * K + cnt * e + r * blocks(use - fac * A, b)).sum())
    if m is not None:
        cost += float(m[choice == Q].sum())
    return cost


def _iterated_pair_search(u, choice, K, A, r, b, m, lam, bound, rounds=ILS_ROUNDS, e=None, w=None, fixed=None,
                          constant=0.0, ok=None) -> np.ndarray:
    """Pair-move descent restarted from perturbations of the best answer so far (small groups only).

    Small groups are packing problems where the dual says little about which pools to open; kicking a
    few SIMs to other plans and descending again finds packings a single descent misses.  The random
    generator has a fixed seed, so the answer is the same on every run.
    """
    kw = {"e": e, "w": w, "fixed": fixed}
    targets = _pair_targets(u, K, A, m, lam, e=e, w=w, ok=ok)
    best = _pair_moves(u, choice, K, A, r, b, m, targets, ok=ok, **kw)
    best_cost = _choice_cost(u, best, K, A, r, b, m, **kw) + constant
    rng = np.random.default_rng(20240601)
    n = u.shape[0]
    for _ in range(rounds):
        if best_cost <= bound + 1e-9 * max(1.0, bound):
            break  # provably optimal already
        trial = best.copy()
        kick = rng.choice(n, size=min(n, int(rng.integers(2, 5))), replace=False)
        trial[kick] = targets[kick, rng.integers(0, targets.shape[1], size=kick.size)]
        if ok is not None:
            # a kick onto a plan the SIM may not take is undone
            on_line = trial[kick] < K.shape[0]
            bad = np.zeros(kick.size, bool)
            bad[on_line] = ~ok[kick[on_line], trial[kick][on_line]]
            if m is not None:
                bad[~on_line] = m[kick[~on_line]] >= NOT_ALLOWED
            trial[kick[bad]] = best[kick[bad]]
        trial = _pair_moves(u, trial, K, A, r, b, m, targets, ok=ok, **kw)
        c = _choice_cost(u, trial, K, A, r, b, m, **kw) + constant
        if c < best_cost - 1e-9:
            best, best_cost = trial, c
    return best


# --------------------------------------------------------------------------- exact enumeration for tiny groups


def _enumerate(u: np.ndarray, plans: np.ndarray, t: PlanTerms, f=None, fixed=None, ok=None) -> tuple[np.ndarray, float]:
    """Cheapest assignment of a few SIMs by listing every one (plans ** SIMs of them).

    fixed: (count, usage, allowance, charge) per plan of `plans` of SIMs that stay in that plan's pool."""
    n, k = u.shape[0], plans.shape[0]
    best_cost, best = np.inf, None
    indiv = _individual_costs(u, plans, t, f)
    charge = t.charge(plans[None, :], None if f is None else f[:, None])
    allowance = t.allowance(plans[None, :], None if f is None else f[:, None]) * np.ones((n, 1))
    linear_pool = t.pooled[plans] & (t.s[plans] > 0)
    n0, U0, A0, C0 = fixed if fixed is not None else (np.zeros(k),) * 4
    total = k**n
    chunk = 20_000
    for start in range(0, total, chunk):
        codes = np.arange(start, min(total, start + chunk), dtype=np.int64)
        digits = (codes[:, None] // (k ** np.arange(n - 1, -1, -1, dtype=np.int64))[None, :]) % k
        cost = np.zeros(codes.shape[0])
        for j in range(k):
            on = digits == j
            if linear_pool[j]:
                cnt = on.sum(axis=1) + n0[j]
                U = (on * u[None, :]).sum(axis=1) + U0[j]
                if f is None:
                    pool = cnt * t.K[plans[j]] + t.r[plans[j]] * blocks(U - cnt * t.A[plans[j]], t.b[plans[j]])
                else:
                    Al = (on * allowance[None, :, j]).sum(axis=1) + A0[j]
                    pool = (on * charge[None, :, j]).sum(axis=1) + C0[j] + t.r[plans[j]] * blocks(U - Al, t.b[plans[j]])
                cost += np.where(cnt > 0, pool, 0.0)
            else:
                cost += (on * indiv[None, :, j]).sum(axis=1)
            if ok is not None:
                cost = np.where((on & ~ok[None, :, j]).any(axis=1), np.inf, cost)
        i = int(np.argmin(cost))
        if cost[i] < best_cost:
            best_cost, best = float(cost[i]), plans[digits[i]]
    return best, best_cost


# --------------------------------------------------------------------------- one group


@dataclass(frozen=True, eq=False)
class Pinned:
    """SIMs of a group that keep their plan: usage, factor (None: the billing factor) and plan per SIM."""

    usage: np.ndarray
    factor: np.ndarray | None
    plan: np.ndarray

    @classmethod
    def none(cls) -> Pinned:
        return cls(np.empty(0), None, np.empty(0, dtype=np.int64))


def _pinned_terms(pinned: Pinned, linear: np.ndarray, t: PlanTerms, uniform: bool):
    """What SIMs that stay put add to the group: per pooled line (count, usage, factor sum, charge sum,
    allowance sum), and the exact cost of those on other plans, whose pools they have to themselves."""
    Q = linear.shape[0]
    if Q:
        on = np.minimum(np.searchsorted(linear, pinned.plan), Q - 1)
        on_line = linear[on] == pinned.plan
    else:
        on, on_line = np.zeros(pinned.plan.shape[0], dtype=np.int64), np.zeros(pinned.plan.shape[0], dtype=bool)
    q = on[on_line]
    f = pinned.factor
    w = np.ones(pinned.plan.shape[0]) if uniform else f
    fl = None if f is None else f[on_line]
    plan_l = pinned.plan[on_line]
    n0 = np.bincount(q, minlength=Q).astype(np.float64)
    U0 = np.bincount(q, weights=pinned.usage[on_line], minlength=Q)
    F0 = np.bincount(q, weights=w[on_line], minlength=Q)
    C0 = np.bincount(q, weights=t.charge(plan_l, fl), minlength=Q)
    A0 = np.bincount(q, weights=t.allowance(plan_l, fl), minlength=Q)
    rest = ~on_line
    other = 0.0
    if rest.any():
        other = group_cost(t, pinned.usage[rest], pinned.plan[rest], None if f is None else f[rest])
    return (n0, U0, F0, C0, A0), other


def solve_group(
    u: np.ndarray,
    plans: np.ndarray,
    t: PlanTerms,
    *,
    f: np.ndarray | None = None,
    pinned: Pinned | None = None,
    allowed_sims: np.ndarray | None = None,
    exact_limit: int = EXACT_LIMIT,
    progress=None,
) -> GroupResult:
    """Assignment (catalogue index per SIM, `u` sorted ascending) and proven lower bound for one group.

    f: the SIMs' factors (None: every SIM has the billing factor).  pinned: the group's SIMs that keep
    their plan (not in `u`); they count in pools, cost and bound, and the plan returned covers `u` only.
    allowed_sims (SIMs x plans, bool): which of `plans` each SIM may take, when SIMs of groups allowing
    different plans share pools (None: every SIM every plan).
    progress, if given, is called with the fraction of this group's work done (phases, not SIMs).
    """
    step = progress if progress is not None else (lambda fraction: None)
    pinned = pinned if pinned is not None else Pinned.none()
    n = u.shape[0]
    uniform = f is None
    is_linear = t.pooled[plans] & (t.s[plans] > 0)
    linear = plans[is_linear]
    other = plans[~is_linear]
    ok = None if allowed_sims is None else np.asarray(allowed_sims, dtype=bool)
    fixed, constant = _pinned_terms(pinned, linear, t, uniform)
    n0, U0, F0, C0, A0 = fixed
    if n == 0:
        value = group_cost(t, pinned.usage, pinned.plan, pinned.factor) if pinned.plan.size else 0.0
        return GroupResult(np.empty(0, dtype=np.int64), value - BOUND_MARGIN * max(1.0, abs(value)), "no SIMs to move")
    if plans.shape[0] ** n <= exact_limit:
        # Pinned SIMs on pooled plans of the group enter the enumeration's pools; the rest cost what they cost.
        by_plan = np.zeros((4, plans.shape[0]))
        pos = np.searchsorted(plans, linear)
        by_plan[0, pos], by_plan[1, pos], by_plan[2, pos], by_plan[3, pos] = n0, U0, A0, C0
        plan, cost = _enumerate(u, plans, t, f, tuple(by_plan) if pinned.plan.size else None, ok)
        cost += constant
        # Enumeration proves optimality: the bound is the optimum itself.
        return GroupResult(plan, cost - BOUND_MARGIN * max(1.0, abs(cost)), "exact enumeration")

    m = marg = None
    if other.size:
        indiv = _individual_costs(u, other, t, f)
        if ok is not None:
            indiv = np.where(ok[:, ~is_linear], indiv, NOT_ALLOWED)
        j = indiv.argmin(axis=1)
        m = indiv[np.arange(n), j]
        marg = other[j]
    if linear.size == 0:
        # No pool whose size matters: every SIM independently takes its cheapest plan, which is optimal.
        value = float(m.sum()) + constant
        return GroupResult(marg, value - BOUND_MARGIN * max(1.0, abs(value)), "exact (no pooled plan)")

    r, b, s = t.r[linear], t.b[linear], t.s[linear]
    ok_lines = None if ok is None else np.ascontiguousarray(ok[:, is_linear])
    if uniform and ok_lines is not None:
        # SIMs that may take different lines are classed as SIMs of different factors are: factor 1 each.
        K, A, e, w = t.K[linear], t.A[linear], np.zeros(linear.size), np.ones(n)
    elif uniform:
        K, A, e, w = t.K[linear], t.A[linear], None, None
    else:
        # Lines per SIM: fee + f * (monthly - lam * full allowance) + lam * usage.
        K, A, e, w = t.monthly[linear], t.included[linear], t.fee[linear], f
    has_fixed = bool(pinned.plan.size)
    X0 = U0 - A0 if has_fixed else None
    pool_fixed = (n0, U0, F0) if has_fixed else None
    line_constant = constant + float(C0.sum())
    lam, tau = _solve_dual(u, m, K, A, s, e=e, w=w, X0=X0, ok=ok_lines)
    step(0.3)
    bound = lagrangian_bound(u, lam, K, A, s, m, e=e, w=w, X0=X0, constant=line_constant, ok=ok_lines)
    choice = _round_smoothed(u, lam, tau, K, A, m, m is not None, e=e, w=w, ok=ok_lines)
    step(0.5)
    pools = _Pools(u, choice, K, A, r, b, m, m is not None, lam, e=e, w=w, fixed=pool_fixed, ok=ok_lines)
    pools.improve(max_moves=max(50, 25 * pools.k), tol=1e-9)
    choice = pools.choice()
    step(0.8)
    if n * (n - 1) // 2 * (min(PAIR_TARGETS, pools.k) + 1) ** 2 <= PAIR_SEARCH_LIMIT:
        # The pair search prices the pinned SIMs on pooled lines; those elsewhere are `constant`.
        choice = _iterated_pair_search(u, choice, K, A, r, b, m, lam, bound, e=e, w=w, fixed=pool_fixed,
                                       constant=constant, ok=ok_lines)
    plan = np.empty(n, dtype=np.int64)
    pooled_sims = choice < linear.size
    plan[pooled_sims] = linear[choice[pooled_sims]]
    if marg is not None:
        plan[~pooled_sims] = marg[~pooled_sims]
    multipliers = np.full(t.K.shape[0], np.nan)
    multipliers[linear] = np.clip(lam, 0.0, s)
    return GroupResult(plan, bound, "certified", multipliers)


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
    if problem.pool is not None:
        return _solve_pool_scopes(problem, progress=progress, max_plans=max_plans, exact_limit=exact_limit)
    share = 0.85 if compare_legacy else 1.0  # the legacy comparison takes roughly the rest
    movable = problem.movable_mask
    factor = problem.factor

    def solve_one(group: Group) -> GroupAnswer:
        t, members, plans = group.terms, group.members, group.plans
        u = problem.usage_mb[members]
        f = None if factor is None else factor[members]
        mov = np.flatnonzero(movable[members])  # positions among members, input order
        stay = np.flatnonzero(~movable[members])
        order = mov[np.argsort(u[mov], kind="stable")]  # the movable SIMs, ascending usage
        idx = members[order]
        pinned = Pinned(u[stay], None if f is None else f[stay], problem.current_plan[members[stay]].astype(np.int64))
        res = solve_group(problem.usage_mb[idx], plans, t, f=None if f is None else f[order], pinned=pinned,
                          exact_limit=exact_limit, progress=lambda fraction: group.progress(share * fraction))
        # Back to input order (pricing in it matches price() bit for bit); pinned SIMs on their plan.
        plan = problem.current_plan[members].astype(np.int64)
        plan[order] = res.plan
        candidates = [Candidate(plan, "certified", res.how)]
        group.progress(share)
        if compare_legacy:
            lg = legacy_best_for_group(problem, group.index, max_sequences=max_sequences, terms=t)
            if lg is not None:
                candidates.append(Candidate(lg.plan, "legacy", f"legacy: {lg.description}", lg.sequence))
        current = problem.current_plan[members]
        win = choose_winner(
            candidates,
            current=Candidate(current, "current", "kept current plans (cheapest)"),
            allowed_plans=plans,
            price=lambda plan: group_cost(t, u, plan, f),
            current_competes=current_plans_compete(current[mov], plans),
        )
        return GroupAnswer(win.candidate.assignment, win.candidate.strategy, win.candidate.sequence,
                           bound=min(res.bound, win.cost), multipliers=res.multipliers)

    return solve_per_group(problem, solve_one, method="certified", max_plans=max_plans, bounded=True, progress=progress)


def _solve_pool_scopes(problem: Problem, *, progress, max_plans, exact_limit) -> Solution:
    """Certified answer when pools span groups (Problem.pool): one solve per pool scope, its SIMs each
    limited to the plans of their own group.  The bound is proven per scope, so there is none per group
    (group_bound is NaN); group costs share each pool's overage as price() does.  The legacy strategies
    work per group and cannot price a pool shared with other groups, so they do not compete here; the
    current plans do, per scope.  SIMs of skipped groups keep their plan and count in their pools.
    """
    started = perf_counter()
    t = plan_terms(problem)
    G, N = problem.n_groups, problem.n_sims
    u, f, cur, grp = problem.usage_mb, problem.factor, problem.current_plan, problem.group
    reasons = [group_skip_reason(int(problem.allowed[g].sum()), max_plans) for g in range(G)]
    sims_per_group = np.bincount(grp, minlength=G)
    skipped = [g for g in range(G) if reasons[g] and sims_per_group[g]]
    free = problem.movable_mask & ~np.isin(grp, skipped)
    by_pool = np.argsort(problem.pool, kind="stable")
    starts = np.searchsorted(problem.pool[by_pool], np.arange(int(problem.pool.max()) + 2 if N else 1))
    assignment = cur.astype(np.int64).copy()
    bound = 0.0
    done = 0
    multipliers = np.full((starts.size - 1, problem.n_plans), np.nan)
    for k in range(starts.size - 1):
        members = by_pool[starts[k] : starts[k + 1]]
        if members.size == 0:
            continue
        mv = members[free[members]]
        stay = members[~free[members] & (cur[members] >= 0)]
        fk = None if f is None else f[members]
        if mv.size == 0:
            if stay.size:
                bound += scope_cost(t, u[stay], cur[stay], None if f is None else f[stay])
            continue
        groups_here = np.unique(grp[mv])
        plans = np.flatnonzero(problem.allowed[groups_here].any(axis=0))
        idx = mv[np.argsort(u[mv], kind="stable")]
        rows = problem.allowed[groups_here][:, plans]
        allowed_sims = None if (rows == rows[0]).all() else problem.allowed[grp[idx]][:, plans]
        pinned = Pinned(u[stay], None if f is None else f[stay], cur[stay].astype(np.int64))
        res = solve_group(u[idx], plans, t, f=None if f is None else f[idx], pinned=pinned,
                          allowed_sims=allowed_sims, exact_limit=exact_limit)
        answer = cur[members].astype(np.int64)
        pos = np.searchsorted(members, idx)  # members are in input order
        answer[pos] = res.plan
        cost = scope_cost(t, u[members], answer, fk)
        # The current plans compete when every SIM that may move has one its group allows.
        current_ok = bool(((cur[mv] >= 0) & problem.allowed[grp[mv], np.maximum(cur[mv], 0)]).all())
        if current_ok:
            kept = scope_cost(t, u[members], cur[members], fk)
            if kept <= cost:
                answer, cost = cur[members].astype(np.int64), kept
        assignment[members] = answer
        if res.multipliers is not None:
            multipliers[k] = res.multipliers
        bound += min(res.bound, cost)
        done += members.size
        if progress is not None:
            progress(done / max(N, 1))
    pr = price(problem, assignment)
    if progress is not None:
        progress(1.0)
    strategy = tuple(
        f"skipped: {reasons[g]}" if g in skipped else ("no SIMs" if not sims_per_group[g] else "certified (pools span groups)")
        for g in range(G)
    )
    notes = tuple(f"group {problem.group_name(g)}: skipped ({reasons[g]}); SIMs keep their current plan" for g in skipped)
    return Solution(
        assignment=assignment.astype(np.int32),
        total_cost=pr.total,
        lower_bound=bound,
        group_cost=pr.per_group,
        group_bound=np.full(G, np.nan),
        method="certified",
        seconds=perf_counter() - started,
        skipped_groups=tuple(skipped),
        winning_strategy=strategy,
        winning_sequence=(None,) * G,
        notes=notes,
        changes=count_changes(problem, assignment),
        multipliers=multipliers,
    )


__all__ = ["solve_certified", "solve_group", "lagrangian_bound", "GroupResult", "Pinned"]
