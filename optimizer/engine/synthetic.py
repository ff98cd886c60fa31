"""Realistic synthetic fleets and M2M catalogues shared by the benchmark and the tests (seeded, deterministic)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .model import Billing, Catalogue, Problem

# A typical M2M ladder: 1 MB to 10 GB.
INCLUDED_MB = (1, 5, 10, 25, 50, 100, 250, 500, 1024, 2048, 5120, 10240)


def _size_label(mb: float) -> str:
    return f"{int(mb // 1024)}GB" if mb >= 1024 else f"{int(mb)}MB"


def m2m_catalogue(pooled: str = "all", fee_per_sim: float = 0.0) -> Catalogue:
    """Twelve plans; monthly cost rises sublinearly with the allowance, the overage price per MB falls.

    pooled: "all", "none", or "mixed" (every other plan is an individual plan, 10 % cheaper per month,
    as carriers price them).
    """
    inc = np.array(INCLUDED_MB, dtype=np.float64)
    monthly = np.round(1.2 * inc**0.42 + 0.3, 2)
    rate = np.round(inc**-0.5, 4)
    if pooled == "all":
        is_pooled = np.ones(len(inc), dtype=bool)
    elif pooled == "none":
        is_pooled = np.zeros(len(inc), dtype=bool)
    elif pooled == "mixed":
        is_pooled = np.arange(len(inc)) % 2 == 0
        monthly = np.where(is_pooled, monthly, np.round(monthly * 0.9, 2))
    else:
        raise ValueError(f"pooled must be all, none or mixed, got {pooled!r}")
    ids = tuple(f"M2M-{_size_label(a)}{'-POOL' if p else ''}" for a, p in zip(inc, is_pooled, strict=True))
    return Catalogue(
        plan_ids=ids,
        monthly_cost=monthly,
        included_mb=inc,
        overage_rate=rate,
        overage_block_mb=np.ones(len(inc)),
        fee_per_sim=np.full(len(inc), float(fee_per_sim)),
        pooled=is_pooled,
    )


def usage_mb(n: int, rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed monthly usage: a third of the fleet nearly idle, the rest lognormal around 30 MB, capped at 50 GB."""
    idle = rng.random(n) < 0.35
    u = np.where(idle, rng.exponential(0.3, n), rng.lognormal(np.log(30.0), 1.6, n))
    return np.round(np.minimum(u, 50_000.0), 3)


def closest_plan(usage: np.ndarray, included: np.ndarray, allowed_plans: np.ndarray) -> np.ndarray:
    """Index (into the catalogue) of the allowed plan whose allowance is closest to each usage."""
    inc = included[allowed_plans]
    pos = np.argmin(np.abs(usage[:, None] - inc[None, :]), axis=1)
    return allowed_plans[pos]


def fleet(
    n: int,
    *,
    seed: int = 0,
    pooled: str = "all",
    groups: int = 1,
    comm_plans: int = 4,
    unknown_current: float = 0.0,
    prorate: bool = False,
    fee_per_sim: float = 0.0,
    charge_type: str = "both",
    prorated: float = 0.0,
    pinned: float = 0.0,
    pools: str = "group",
) -> Problem:
    """A fleet of n SIMs on the 12-plan catalogue.

    Group 0 may use every plan; further groups each allow a random subset of at least two plans, as
    communication plans restricting the catalogue do.  Current plans are where last month's usage
    (this month's with noise) would have put each SIM; `unknown_current` of them are unknown (-1).
    `prorated` of the SIMs are billed for a random 1..29 days of a 30-day cycle (activated or deactivated
    mid-cycle; the billing then prorates, the others have factor 1), and `pinned` of those with a current
    plan cannot move.  Both are drawn after everything else, so the rest of the fleet is the same.
    pools: "group" (each group pools apart, the legacy rule) or "account" (one pool key for every SIM:
    shared plans pool account-wide across groups).
    """
    if pools not in ("group", "account"):
        raise ValueError(f"pools must be group or account, got {pools!r}")
    rng = np.random.default_rng(seed)
    cat = m2m_catalogue(pooled, fee_per_sim)
    P = len(cat)
    allowed = np.zeros((groups, P), dtype=bool)
    allowed[0] = True
    for g in range(1, groups):
        k = int(rng.integers(2, P + 1))
        allowed[g, rng.choice(P, size=k, replace=False)] = True
    u = usage_mb(n, rng)
    grp = rng.integers(0, groups, size=n).astype(np.int32)
    last_month = u * rng.lognormal(0.0, 0.6, n)
    current = np.empty(n, dtype=np.int32)
    for g in range(groups):
        m = grp == g
        current[m] = closest_plan(last_month[m], cat.included_mb, np.flatnonzero(allowed[g]))
    if unknown_current > 0:
        current[rng.random(n) < unknown_current] = -1
    billing = Billing(30, 18, True) if prorate else Billing()
    comm = rng.integers(0, max(1, comm_plans), size=n).astype(np.int32)
    factor = movable = None
    if prorated > 0:
        billing = Billing(30, 30, True)
        days = np.where(rng.random(n) < prorated, rng.integers(1, 30, size=n), 30)
        factor = days / 30.0
    if pinned > 0:
        movable = ~((rng.random(n) < pinned) & (current >= 0))
    return Problem(
        catalogue=cat,
        usage_mb=u,
        group=grp,
        allowed=allowed,
        billing=billing,
        charge_type=charge_type,
        group_names=tuple(f"G{g + 1}" for g in range(groups)),
        current_plan=current,
        comm_plan=comm,
        factor=factor,
        movable=movable,
        pool=np.zeros(n, dtype=np.int32) if pools == "account" else None,
    )


def write_problem_files(problem: Problem, plans_path, devices_path, *, iccid_base: int = 8901260000000000000) -> None:
    """Write `problem` as plans.json + devices.csv in the offline format (the inverse of files.read_problem)."""
    cat = problem.catalogue
    names = [problem.group_name(g) for g in range(problem.n_groups)]
    doc = {
        "currency": "USD",
        "billing": {
            "days_in_cycle": problem.billing.days_in_cycle,
            "days_remaining": problem.billing.days_remaining,
            "prorate": problem.billing.prorate,
        },
        "charge_type": problem.charge_type,
        "plans": [
            {
                "id": pid,
                "monthly_cost": float(cat.monthly_cost[i]),
                "included_mb": float(cat.included_mb[i]),
                "overage_rate": float(cat.overage_rate[i]),
                "overage_block_mb": float(cat.overage_block_mb[i]),
                "fee_per_sim": float(cat.fee_per_sim[i]),
                "pooled": bool(cat.pooled[i]),
            }
            for i, pid in enumerate(cat.plan_ids)
        ],
        "groups": {
            names[g]: [cat.plan_ids[p] for p in np.flatnonzero(problem.allowed[g])] for g in range(problem.n_groups)
        },
    }
    Path(plans_path).write_text(json.dumps(doc, indent=2) + "\n")
    ids = np.array(cat.plan_ids + ("",), dtype=object)
    gnames = np.array(names, dtype=object)
    usage_text = [repr(float(x)) for x in problem.usage_mb]
    header = ["iccid", "usage_mb", "current_plan", "group"]
    extra = []
    if problem.factor is not None:
        header.append("days_active")
        extra.append(np.rint(problem.factor * problem.billing.days_in_cycle).astype(np.int64))
    if problem.movable is not None:
        header.append("movable")
        extra.append(problem.movable.astype(np.int8))
    if problem.pool is not None:
        header.append("pool")
        extra.append(np.char.add("P", problem.pool.astype(str)))
    with open(devices_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        chunk = 100_000
        for start in range(0, problem.n_sims, chunk):
            stop = min(start + chunk, problem.n_sims)
            w.writerows(
                zip(
                    (str(iccid_base + i) for i in range(start, stop)),
                    usage_text[start:stop],
                    ids[problem.current_plan[start:stop]],
                    gnames[problem.group[start:stop]],
                    *(col[start:stop].tolist() for col in extra),
                    strict=True,
                )
            )
