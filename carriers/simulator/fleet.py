"""A deterministic, realistic M2M fleet for the demo, the carrier simulator and tests (no Django)."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

BYTES_PER_MB = 1024 * 1024  # as carriers.BYTES_PER_MB (this module imports nothing of the project)

DEMO_USERNAME = "demo-api-user"
DEMO_API_KEY = "demo-simulator-key"  # The simulator's own credential; not a secret of any real carrier.
DEMO_CYCLE_END_DAY = 31  # 31 means the last day of the month.
DEMO_TIMEZONE = "America/Chicago"


@dataclass(frozen=True)
class PlanSpec:
    code: str
    monthly_cost: float
    included_mb: float
    overage_rate: float
    overage_block_mb: float
    pooled: bool


# Monthly cost rises sublinearly with the allowance and the overage price per MB
# falls with plan size: the shape of real M2M catalogues, where the wrong plan
# costs either idle allowance or expensive overage.
CATALOGUE: tuple[PlanSpec, ...] = (
    PlanSpec("M2M-1MB-POOL", 0.90, 1, 0.75, 1, True),
    PlanSpec("M2M-5MB", 1.50, 5, 0.50, 1, False),
    PlanSpec("M2M-10MB-POOL", 2.00, 10, 0.40, 1, True),
    PlanSpec("M2M-25MB", 3.00, 25, 0.25, 1, False),
    PlanSpec("M2M-50MB-POOL", 4.50, 50, 0.15, 1, True),
    PlanSpec("M2M-100MB", 6.00, 100, 0.10, 1, False),
    PlanSpec("M2M-250MB-POOL", 9.00, 250, 0.06, 1, True),
    PlanSpec("M2M-500MB", 13.00, 500, 0.04, 1, False),
    PlanSpec("M2M-1GB-POOL", 18.00, 1024, 0.025, 1, True),
    PlanSpec("M2M-2GB", 25.00, 2048, 0.02, 1, False),
    PlanSpec("M2M-5GB-POOL", 40.00, 5120, 0.015, 1, True),
    PlanSpec("M2M-10GB", 60.00, 10240, 0.012, 1, False),
)
PLAN_CODES = tuple(p.code for p in CATALOGUE)


@dataclass(frozen=True)
class CommPlanSpec:
    name: str
    rate_plans: tuple[str, ...]
    share: float  # of the fleet
    median_mb: float  # lognormal usage per full cycle
    sigma: float


COMMUNICATION_PLANS: tuple[CommPlanSpec, ...] = (
    CommPlanSpec("CP-Telemetry-Low", PLAN_CODES[0:6], 0.50, 2.0, 1.2),
    CommPlanSpec("CP-Fleet-Standard", PLAN_CODES[0:9], 0.35, 40.0, 1.3),
    CommPlanSpec("CP-Video-High", PLAN_CODES[5:12], 0.15, 800.0, 1.0),
)

STATUSES = ("ACTIVATED", "DEACTIVATED", "INVENTORY")
STATUS_SHARE = (0.92, 0.05, 0.03)
RECENTLY_ACTIVATED = 0.04  # of active SIMs, activated 1-25 days ago
USAGE_UNAVAILABLE = 0.003  # of active SIMs, whose usage call fails (see Fleet.usage_unavailable)
# The tenant's own customers (Control Center's device `customer`: "an enterprise or business unit"), with their
# share of the fleet; the rest of the SIMs belong to no customer.
CUSTOMERS = ("Northwind Freight", "Contoso Water", "Fabrikam Retail")
CUSTOMER_SHARE = (0.40, 0.25, 0.20)


@dataclass(frozen=True)
class Fleet:
    """Column arrays, one row per SIM, in ICCID order."""

    iccid: np.ndarray  # str
    status: np.ndarray  # index into STATUSES
    comm_plan: np.ndarray  # index into COMMUNICATION_PLANS
    rate_plan: np.ndarray  # index into CATALOGUE
    cycle_usage_mb: np.ndarray  # usage over a full cycle
    date_activated: np.ndarray  # seconds before the reference time
    date_updated: np.ndarray  # seconds before the reference time
    # SIMs whose usage call the carrier fails (its usage service has no record of them); the demo's simulator
    # answers their ctdUsages with an error, so a session has to do without their usage.
    usage_unavailable: np.ndarray = None  # bool
    customer: np.ndarray = None  # index into CUSTOMERS, -1: no customer

    def customer_name(self, i: int) -> str | None:
        c = int(self.customer[i])
        return CUSTOMERS[c] if c >= 0 else None

    def __len__(self):
        return len(self.iccid)


def iccid_for(seed: int, index: np.ndarray) -> np.ndarray:
    """19-digit ICCIDs: industry 89, country 01, issuer 26, a seed-derived block, a serial."""
    serial = np.char.zfill(index.astype(str), 11)
    return np.char.add(f"890126{seed % 100:02d}", serial)


def generate_fleet(n: int, seed: int) -> Fleet:
    rng = np.random.default_rng(seed)
    shares = np.array([c.share for c in COMMUNICATION_PLANS])
    comm = rng.choice(len(COMMUNICATION_PLANS), size=n, p=shares / shares.sum())
    medians = np.array([c.median_mb for c in COMMUNICATION_PLANS])[comm]
    sigmas = np.array([c.sigma for c in COMMUNICATION_PLANS])[comm]
    usage = medians * np.exp(sigmas * rng.standard_normal(n))
    # A share of SIMs is nearly idle: installed but rarely reporting.
    idle = rng.random(n) < 0.08
    usage[idle] = rng.random(idle.sum()) * 0.05
    status = rng.choice(len(STATUSES), size=n, p=STATUS_SHARE)
    usage[status != 0] *= 0.02
    usage = np.round(usage, 3)

    # Current plans are what a cautious buyer picked: the next plan up from the
    # usage with some headroom, sometimes far too big, always allowed by the
    # communication plan. With pooling unused this overpays by ~25 %, in the
    # 15-30 % range real fleets show.
    included = np.array([p.included_mb for p in CATALOGUE])
    rate_plan = np.empty(n, dtype=np.int64)
    headroom = usage * rng.choice([0.9, 1.1, 1.5, 3.0], size=n, p=[0.30, 0.35, 0.20, 0.15])
    for ci, spec in enumerate(COMMUNICATION_PLANS):
        mask = comm == ci
        allowed = np.array([PLAN_CODES.index(code) for code in spec.rate_plans])
        allowed_inc = included[allowed]
        pos = np.searchsorted(allowed_inc, headroom[mask], side="left")
        rate_plan[mask] = allowed[np.minimum(pos, len(allowed) - 1)]

    day = 86_400
    date_activated = rng.integers(40 * day, 730 * day, size=n)
    date_updated = rng.integers(0, 40 * day, size=n)
    # Drawn after everything above, so the earlier columns of a (n, seed) fleet never change.
    # A share of active SIMs was activated in the last weeks (mid-cycle: billed pro rata); a SIM
    # deactivated in the last 40 days (date_updated) was deactivated mid-cycle when that is this cycle.
    recent = (rng.random(n) < RECENTLY_ACTIVATED) & (status == 0)
    date_activated = np.where(recent, rng.integers(day, 25 * day, size=n), date_activated)
    date_updated = np.where(recent, np.minimum(date_updated, date_activated), date_updated)
    usage_unavailable = (rng.random(n) < USAGE_UNAVAILABLE) & (status == 0)
    shares = np.array([*CUSTOMER_SHARE, 1 - sum(CUSTOMER_SHARE)])
    customer = rng.choice(len(shares), size=n, p=shares)
    customer = np.where(customer == len(CUSTOMERS), -1, customer)
    return Fleet(
        iccid=iccid_for(seed, np.arange(n)),
        status=status,
        comm_plan=comm,
        rate_plan=rate_plan,
        cycle_usage_mb=usage,
        date_activated=date_activated,
        date_updated=date_updated,
        usage_unavailable=usage_unavailable,
        customer=customer,
    )


# How SIMs spread their usage over a cycle: per SIM and cycle a trend within +-USAGE_TREND_SPREAD around its
# communication plan's lean (video back-loaded, fleet tracking front-loaded). The simulator answers with it and
# seed_demo stores the same numbers, so a session on seeded usage sees what a sync would have fetched.
USAGE_TREND_SPREAD = 0.5
USAGE_TREND_LEAN = {"CP-Telemetry-Low": 0.0, "CP-Fleet-Standard": -0.15, "CP-Video-High": 0.3}


def _mix64(value: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit integer from any integer (deterministic, no RNG state)."""
    z = (value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def usage_trend(*, seed: int, index: int, comm_plan: str, cycle_start: dt.date) -> float:
    """SIM `index`'s usage trend in the cycle starting `cycle_start`, in -0.95..0.95: above 0 it uses more late in
    the cycle (projections from cycle to date fall short), below 0 early (they overshoot). Deterministic: the
    communication plan's lean (USAGE_TREND_LEAN) plus a spread drawn from (seed, SIM, cycle)."""
    mixed = _mix64((seed * 1_000_003 + index) * 1_000_033 + cycle_start.toordinal())
    spread = (mixed / 2**64 * 2 - 1) * USAGE_TREND_SPREAD
    return max(-0.95, min(0.95, USAGE_TREND_LEAN.get(comm_plan, 0.0) + spread))


def ctd_bytes(cycle_usage_mb: float, *, trend: float, fraction: float) -> int:
    """Cycle-to-date bytes of a SIM that uses `cycle_usage_mb` in the whole cycle, at the elapsed share `fraction`:
    its curve is f * (1 - t * (1 - f)) of the cycle usage (the whole of it at the cycle's end)."""
    curve = fraction * (1 - trend * (1 - fraction))
    return math.floor(cycle_usage_mb * curve * BYTES_PER_MB)
